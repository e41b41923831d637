//! Orders after settlement: their status and who may move it.
//!
//! An order starts `pending_payment`. The buyer pays for a market night's checkout at once; the
//! operator's payment desk confirms it (`paid`); the seller ships and confirms delivery. An
//! order no one paid is cancelled after the payment deadline by the system; before payment the
//! buyer may cancel it, and the operator may cancel any order not yet shipped.

use serde::{Deserialize, Serialize};

use crate::{BuyerId, ShowId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        Self::PendingPayment,
        Self::Paid,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks to move an order. Sellers and buyers act only on their own orders; the caller checks
/// ownership, this module checks the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderActor {
    Buyer,
    Seller,
    Operator,
    /// The payment deadline.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderTransitionError {
    #[error("an order cannot go from {from} to {to}")]
    NotAllowed { from: OrderStatus, to: OrderStatus },
    #[error("{actor} may not move an order from {from} to {to}")]
    Forbidden {
        actor: &'static str,
        from: OrderStatus,
        to: OrderStatus,
    },
}

impl OrderActor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buyer => "buyer",
            Self::Seller => "seller",
            Self::Operator => "operator",
            Self::System => "system",
        }
    }
}

/// Whether `actor` may move an order from `from` to `to`. The path is
/// pending_payment → paid → shipped → delivered; cancelled is reachable before shipping.
pub fn check_transition(
    from: OrderStatus,
    to: OrderStatus,
    actor: OrderActor,
) -> Result<(), OrderTransitionError> {
    use OrderActor as A;
    use OrderStatus as S;
    let lawful = matches!(
        (from, to),
        (S::PendingPayment, S::Paid)
            | (S::Paid, S::Shipped)
            | (S::Shipped, S::Delivered)
            | (S::PendingPayment, S::Cancelled)
            | (S::Paid, S::Cancelled)
    );
    if !lawful {
        return Err(OrderTransitionError::NotAllowed { from, to });
    }
    let permitted = match (from, to) {
        // Payment is confirmed by the market's payment desk, never self-declared.
        (S::PendingPayment, S::Paid) => matches!(actor, A::Operator),
        (S::Paid, S::Shipped) | (S::Shipped, S::Delivered) => {
            matches!(actor, A::Seller | A::Operator)
        }
        (S::PendingPayment, S::Cancelled) => true,
        // A paid order is refunded by the operator only.
        (S::Paid, S::Cancelled) => matches!(actor, A::Operator),
        _ => false,
    };
    if permitted {
        Ok(())
    } else {
        Err(OrderTransitionError::Forbidden {
            actor: actor.as_str(),
            from,
            to,
        })
    }
}

/// The order of one buyer in one show. Derived, so settling a show twice writes the same ids.
/// `~` is outside the id alphabet, so the parts cannot run together, and it needs no escaping in
/// a URL path.
pub fn order_id(show: &ShowId, buyer: &BuyerId) -> String {
    format!("o~{show}~{buyer}")
}

/// The prefix every order id of `show` starts with (followed by the buyer id).
pub fn order_prefix(show: &ShowId) -> String {
    format!("o~{show}~")
}

/// The checkout prefix of a show: one per market night (`c~<market>~<date>~`), or per show for
/// shows outside a market (`c~<show>~`); the buyer id follows.
pub fn checkout_prefix(night: Option<(&str, &str)>, show: &ShowId) -> String {
    match night {
        Some((market, date)) => format!("c~{market}~{date}~"),
        None => format!("c~{show}~"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_path_and_its_guards() {
        use OrderActor as A;
        use OrderStatus as S;
        assert!(check_transition(S::PendingPayment, S::Paid, A::Operator).is_ok());
        assert!(check_transition(S::PendingPayment, S::Paid, A::Buyer).is_err());
        assert!(check_transition(S::Paid, S::Shipped, A::Seller).is_ok());
        assert!(check_transition(S::Paid, S::Shipped, A::Buyer).is_err());
        assert!(check_transition(S::Shipped, S::Delivered, A::Seller).is_ok());
        assert!(check_transition(S::PendingPayment, S::Cancelled, A::Buyer).is_ok());
        assert!(check_transition(S::PendingPayment, S::Cancelled, A::System).is_ok());
        assert!(check_transition(S::Paid, S::Cancelled, A::Buyer).is_err());
        assert!(check_transition(S::Paid, S::Cancelled, A::Operator).is_ok());
        assert_eq!(
            check_transition(S::Shipped, S::Cancelled, A::Operator),
            Err(OrderTransitionError::NotAllowed {
                from: S::Shipped,
                to: S::Cancelled
            })
        );
        assert!(check_transition(S::Delivered, S::Paid, A::Operator).is_err());
        assert!(check_transition(S::Paid, S::Paid, A::Operator).is_err());
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn ids_do_not_run_together() {
        let show = ShowId::parse("s:1").unwrap();
        let buyer = BuyerId::parse("b").unwrap();
        assert_eq!(order_id(&show, &buyer), "o~s:1~b");
        assert_eq!(
            checkout_prefix(Some(("m", "2026-11-27")), &show),
            "c~m~2026-11-27~"
        );
        assert_eq!(checkout_prefix(None, &show), "c~s:1~");
    }
}
