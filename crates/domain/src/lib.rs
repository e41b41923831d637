//! The market's rules, as pure functions over plain data: no clock read (time is a parameter),
//! no sockets, no storage. Everything here can be unit- and property-tested in isolation, and both
//! inventory implementations (memory and Redis) must agree with it.
//!
//! - [`ids`]: identifiers parsed at the edge ("parse, don't validate").
//! - [`money`]: đồng amounts and quantities.
//! - [`ocop`]: OCOP facts (stars, product group) and the rules for free texts.
//! - [`product`]: a catalog product with its OCOP proof and documents.
//! - [`book`]: one show's live state and the claim, cancel, waitlist and seller-command rules.
//! - [`market`]: recurring market nights, their exceptions, seller slots and show timing.
//! - [`admission`]: proof documents, and whether a product's proof admits it to a night.
//! - [`order`]: orders after settlement, their status and who may move it.
//! - [`settlement`]: the claim log as the order service reads and records it.
//! - [`clock`]: the one clock the layers above are given (system, or manual in tests).

/// The conversions of a checked number (`Dong`, `Stars`): read back as `$inner`, and parsed from
/// the `i64` a JSON number or a database column gives (serde's `try_from`/`into` use these).
macro_rules! checked_number {
    ($name:ident, $inner:ty, $error:ty) => {
        impl $name {
            pub fn get(self) -> $inner {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = $error;
            fn try_from(n: i64) -> Result<Self, $error> {
                Self::parse(n)
            }
        }

        impl From<$name> for $inner {
            fn from(n: $name) -> $inner {
                n.0
            }
        }
    };
}

pub mod admission;
pub mod book;
pub mod clock;
pub mod ids;
pub mod market;
pub mod money;
pub mod ocop;
pub mod order;
pub mod product;
pub mod settlement;

pub use admission::{
    AdmissionError, Decision, Document, DocumentKind, ProductProof, Refusal as AdmissionRefusal,
    check_admission, expiry_warnings,
};
pub use book::{
    CancelDecision, ClaimAccepted, ClaimDecision, ClaimRecord, ClaimRequest, CommandError,
    EndReason, Flash, FlashSpec, JoinDecision, LineupEntry, Refusal, RefusalReason, SequencedEvent,
    ShowBook, ShowEvent, ShowStatus, SkipReason, WaitlistEntry, WaitlistNotice, WaitlistOutcome,
    WaitlistRefusal,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{BuyerId, ClaimId, IdError, MarketId, ProductId, SellerId, ShowId};
pub use market::{
    Market, MarketError, MarketSpec, Night, NightException, NightStatus, ShowTiming, Slot,
    SlotError, check_slot,
};
pub use money::{Dong, MoneyError, Quantity};
pub use ocop::{OcopError, ProductGroup, Stars};
pub use order::{OrderActor, OrderStatus, OrderTransitionError, check_transition};
pub use product::Product;
pub use settlement::{LogCursor, LogEntry, LogPage, RecordedEntry};

/// Milliseconds since the Unix epoch, UTC. Instants are stored and compared in UTC only; local
/// time (Asia/Ho_Chi_Minh) is a presentation concern.
pub type Millis = i64;
