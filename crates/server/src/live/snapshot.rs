//! Snapshots for joining viewers, built on this node from what it keeps of the show already.
//!
//! A snapshot is the show's public part (identity, status, pin, flash, price, lineup with the
//! stock left, claim feed), alike for every viewer joining at one point; the viewer's own part
//! (`my_claims`, `my_waitlist`); and two numbers of the moment (`server_time`, `viewers`). The
//! public part comes from the node's own state: the status, pin and flash folded from the
//! show's events ([`super::public`]), the stock, flash sales and claim feed of the last refresh,
//! the lineup as the show was opened. It is encoded once per point (sequence number, refresh
//! generation, price now) and kept; every viewer joining at that point gets those bytes with
//! its own fields spliced in. A join storm then costs one encoding of the lineup, not one per
//! viewer, and no inventory read but the viewer's own claims and places (none for a viewer
//! without a buyer identity). The frame is byte for byte the one [`ShowRuntime::whole_snapshot`]
//! makes from the inventory's whole view (a test checks it).
//!
//! Why nothing is lost or sent twice:
//! - events: the snapshot is stamped with the sequence number of the public state it shows, and
//!   the engine sends every event after it (the viewer was attached before);
//! - stock and feed: the snapshot holds the values the refresh last set in the show's conflated
//!   cells, and it is built and the viewer started under the refresh's lock, so the engine marks
//!   exactly those values as seen; a newer one reaches the viewer as for everyone else;
//! - the viewer's own part: read from the inventory with the show's sequence number and stock
//!   version; a node behind either answers from a fresh refresh or from the whole view.

use std::fmt::Write as _;

use nightmarket_domain::{Dong, LineupEntry, Millis};
use nightmarket_inventory::{BookView, BuyerView};
use nightmarket_live::Frame;
use nightmarket_wire::server::{CatchUp, FlashView, LineupView, ShowView, Snapshot};
use serde::Serialize;

use super::ShowRuntime;
use super::runtime::TickState;
use crate::convert;

/// A joining viewer's own part of its snapshot, encoded, and where the show stood when it was
/// read.
pub struct OwnPart {
    my_claims: String,
    my_waitlist: String,
    /// The show's sequence number and stock version as of the read; none without a buyer.
    read_at: Option<(u64, u64)>,
}

impl OwnPart {
    /// A viewer without a buyer identity (a seller, an operator): nothing of its own.
    pub fn nobody() -> Self {
        Self {
            my_claims: "[]".to_owned(),
            my_waitlist: "[]".to_owned(),
            read_at: None,
        }
    }

    /// A buyer's part as the inventory's narrow read gave it.
    pub fn of(view: &BuyerView) -> Self {
        let claims: Vec<_> = view.my_claims.iter().map(convert::my_claim).collect();
        let places: Vec<_> = view
            .my_waitlist
            .iter()
            .map(|(e, position)| convert::my_waitlist_entry(e, *position))
            .collect();
        Self {
            my_claims: json(&claims).unwrap_or_else(|| "[]".to_owned()),
            my_waitlist: json(&places).unwrap_or_else(|| "[]".to_owned()),
            read_at: Some((view.seq, view.stock_version)),
        }
    }
}

/// Why this node cannot answer a join from its own state right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// Not refreshed yet, or the stock it read does not match the lineup it opened with.
    NotReady,
    /// The viewer's own part was read at this stock version, newer than the node's.
    Stock(u64),
    /// The viewer's own part was read at a sequence number the node has not reached: events
    /// are on their way here.
    Events,
}

/// What an encoded public part depends on besides the show's identity and lineup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    seq: u64,
    /// Bumped by the refresh whenever the stock, the flash's sales or the claim feed change.
    generation: u64,
    /// A flash counting down changes the price at its start without an event.
    price: Option<i64>,
}

/// The public fields of a snapshot as JSON, for one [`Point`].
pub(super) struct PublicPart {
    at: Point,
    /// `"show":…,"pinned":…,"flash":…,"price":…,"lineup":[…]`
    head: String,
    /// `"recent_claims":[…]`
    tail: String,
}

impl PublicPart {
    /// The whole `snapshot` frame: the fields in [`Snapshot`]'s order, as serde writes them.
    fn frame(&self, server_time: Millis, own: &OwnPart, viewers: u64) -> Frame {
        let mut text = String::with_capacity(
            self.head.len() + self.tail.len() + own.my_claims.len() + own.my_waitlist.len() + 128,
        );
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            r#"{{"type":"snapshot","seq":{},"server_time":{server_time},"#,
            self.at.seq
        );
        text.push_str(&self.head);
        text.push_str(r#","my_claims":"#);
        text.push_str(&own.my_claims);
        text.push_str(r#","my_waitlist":"#);
        text.push_str(&own.my_waitlist);
        let _ = write!(text, r#","viewers":{viewers},"#);
        text.push_str(&self.tail);
        text.push('}');
        Frame::text(&text)
    }
}

impl ShowRuntime {
    /// Builds a joining viewer's snapshot from this node's state at `now` and hands it, with
    /// its sequence number, to `start`, which starts the viewer: all while the refresh cannot
    /// change the conflated values the snapshot holds (see the module). `Err` when the node's
    /// state cannot answer this viewer; nothing was started then.
    pub fn join_here<R>(
        &self,
        now: Millis,
        own: &OwnPart,
        start: impl FnOnce(u64, Frame) -> R,
    ) -> Result<R, Behind> {
        let mut tick = self.tick.lock().map_err(|_| Behind::NotReady)?;
        let version = tick.stock_version.ok_or(Behind::NotReady)?;
        let public = self.public.lock().map_err(|_| Behind::NotReady)?;
        let state = public.current();
        if let Some((seq, stock_version)) = own.read_at {
            if stock_version > version {
                return Err(Behind::Stock(stock_version));
            }
            if seq > state.seq {
                return Err(Behind::Events);
            }
        }
        let flash = flash_now(state.flash.as_ref(), &tick);
        let at = Point {
            seq: state.seq,
            generation: tick.generation,
            price: price_at(state, flash.as_ref(), &self.lineup, now),
        };
        if tick.snapshot.as_ref().is_none_or(|p| p.at != at) {
            let part = self
                .public_part(at, state, flash, &tick)
                .ok_or(Behind::NotReady)?;
            tick.snapshot = Some(part);
        }
        drop(public);
        let part = tick.snapshot.as_ref().ok_or(Behind::NotReady)?;
        let frame = part.frame(now, own, self.channel.viewer_count());
        Ok(start(at.seq, frame))
    }

    fn public_part(
        &self,
        at: Point,
        state: &CatchUp,
        flash: Option<FlashView>,
        tick: &TickState,
    ) -> Option<PublicPart> {
        if self.lineup.len() != tick.levels.len() {
            return None;
        }
        let lineup = self
            .lineup
            .iter()
            .zip(&tick.levels)
            .map(|(entry, (product, left))| {
                (&entry.product.id == product).then(|| LineupView {
                    left: *left,
                    ..convert::lineup_view(entry)
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let mut head = String::new();
        field(&mut head, "show", &self.show_view(&state.status))?;
        head.push(',');
        field(&mut head, "pinned", &state.pinned)?;
        head.push(',');
        field(&mut head, "flash", &flash)?;
        head.push(',');
        field(&mut head, "price", &at.price)?;
        head.push(',');
        field(&mut head, "lineup", &lineup)?;
        let mut tail = String::new();
        field(&mut tail, "recent_claims", &tick.recent)?;
        Some(PublicPart { at, head, tail })
    }

    fn show_view(&self, status: &str) -> ShowView {
        ShowView {
            id: self.id.to_string(),
            title: self.title.clone(),
            seller_id: self.seller_id.to_string(),
            seller_name: self.seller_name.clone(),
            status: status.to_owned(),
        }
    }

    /// The snapshot as the inventory's whole `view` gives it, at `server_time`: what a join is
    /// answered with when this node's own state cannot answer it.
    pub fn whole_snapshot(&self, view: &BookView, server_time: Millis) -> Snapshot {
        Snapshot {
            seq: view.seq,
            server_time,
            show: self.show_view(view.status.as_str()),
            pinned: view.pinned.as_ref().map(ToString::to_string),
            flash: view.flash.as_ref().map(convert::flash_view),
            price: view.price.map(Dong::get),
            lineup: view.lineup.iter().map(convert::lineup_view).collect(),
            my_claims: view.my_claims.iter().map(convert::my_claim).collect(),
            my_waitlist: view
                .my_waitlist
                .iter()
                .map(|(e, position)| convert::my_waitlist_entry(e, *position))
                .collect(),
            viewers: self.channel.viewer_count(),
            recent_claims: self.recent_claims(),
        }
    }
}

/// The running flash as of the last refresh: its units sold come from there, the rest from its
/// `flash_started` event.
fn flash_now(flash: Option<&FlashView>, tick: &TickState) -> Option<FlashView> {
    let mut flash = flash?.clone();
    if let Some((id, sold)) = tick.flash_sold
        && id == flash.flash_id
    {
        flash.sold = sold;
    }
    Some(flash)
}

/// The price a claim on the pinned product must carry at `now`, as the inventory judges it
/// (`ShowBook::current_price`): the flash's while it applies (`Flash::applies`: started, not
/// ended, cap not reached), else the product's list price.
fn price_at(
    state: &CatchUp,
    flash: Option<&FlashView>,
    lineup: &[LineupEntry],
    now: Millis,
) -> Option<i64> {
    let pinned = state.pinned.as_deref()?;
    let entry = lineup.iter().find(|e| e.product.id.as_str() == pinned)?;
    Some(match flash {
        Some(f)
            if f.product_id == pinned
                && f.starts_at <= now
                && now < f.ends_at
                && f.quantity_cap.map(|cap| cap.saturating_sub(f.sold)) != Some(0) =>
        {
            f.price
        }
        _ => entry.product.list_price.get(),
    })
}

fn json(value: &impl Serialize) -> Option<String> {
    serde_json::to_string(value).ok()
}

/// Appends `"name":value`, as serde writes a field of a struct.
fn field(out: &mut String, name: &str, value: &impl Serialize) -> Option<()> {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
    out.push_str(&json(value)?);
    Some(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nightmarket_domain::{BuyerId, ClaimId, Dong, FlashSpec, JoinDecision, SellerId, ShowId};
    use nightmarket_inventory::conformance::fixtures::{LIST, lineup, pid, qty, req};
    use nightmarket_inventory::{Command, Inventory};
    use nightmarket_wire::server::ServerMessage;
    use tokio::sync::watch;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::live::tests::live;
    use crate::live::{Live, Opening, ShowIdentity, frame};

    const T0: Millis = 1_763_730_000_000;
    const FLASH: i64 = LIST - 20_000;

    /// A node serving one show over an embedded inventory, on a manual clock.
    struct Node {
        live: Arc<Live>,
        _stop: watch::Sender<bool>,
        inv: Arc<dyn Inventory>,
        rt: Arc<ShowRuntime>,
        clock: ManualClock,
    }

    impl Node {
        /// A live show with `p1` (three units) pinned and on a flash, one unit claimed by `b1`
        /// and two by `b2`, and `b1` waiting for more; the node has refreshed once since.
        async fn new(dir: &std::path::Path) -> Node {
            let clock = ManualClock::new(T0);
            let (live, stop) = live(dir, &clock);
            let inv = live.inventory.clone();
            let show = ShowId::parse("joins").unwrap();
            inv.open_show(&show, lineup(3, 3).unwrap()).await.unwrap();
            for cmd in [Command::GoLive, Command::Pin(pid("p1")), flash("p1", 0)] {
                inv.command(&show, cmd, T0).await.unwrap();
            }
            let view = inv.view(&show, None, T0).await.unwrap();
            let identity = ShowIdentity {
                id: show,
                seller_id: SellerId::parse("seller-1").unwrap(),
                seller_name: "HTX Chè Ba Vì".into(),
                title: "Chè đêm".into(),
            };
            let (rt, _) = live.open(identity, Opening::from_view(&view, 0));
            let node = Node {
                live,
                _stop: stop,
                inv,
                rt,
                clock,
            };
            node.claim("c1", "b1", 1).await;
            node.claim("c2", "b2", 2).await;
            let joined = node
                .inv
                .waitlist_join(
                    &node.rt.id,
                    nightmarket_inventory::WaitlistJoin {
                        buyer: buyer("b1"),
                        product: pid("p1"),
                        quantity: qty(1).unwrap(),
                        now: T0,
                    },
                )
                .await
                .unwrap();
            assert!(matches!(joined, JoinDecision::Joined { .. }), "{joined:?}");
            node.live.refresh(&node.rt).await;
            node
        }

        /// The frame the inventory's whole view makes for `buyer` now.
        async fn whole(&self, buyer: Option<&BuyerId>) -> (u64, Frame) {
            let now = self.clock.now();
            let view = self.inv.view(&self.rt.id, buyer, now).await.unwrap();
            let snap = self.rt.whole_snapshot(&view, now);
            (view.seq, frame(&ServerMessage::Snapshot(Box::new(snap))))
        }

        /// The frame this node makes for `buyer` now from its own state and the buyer's
        /// narrow read.
        async fn here(&self, buyer: Option<&BuyerId>) -> Result<(u64, Frame), Behind> {
            let own = match buyer {
                None => OwnPart::nobody(),
                Some(b) => OwnPart::of(&self.inv.buyer_view(&self.rt.id, b).await.unwrap()),
            };
            self.rt
                .join_here(self.clock.now(), &own, |seq, frame| (seq, frame))
        }

        /// Both frames agree byte for byte: for a buyer with claims and a waitlist place, a
        /// buyer with neither, and a viewer without a buyer identity.
        async fn agree(&self, what: &str) {
            for buyer in [Some(&buyer("b1")), Some(&buyer("b9")), None] {
                let (seq, here) = self.here(buyer).await.unwrap();
                let (whole_seq, whole) = self.whole(buyer).await;
                assert_eq!(
                    (seq, String::from_utf8_lossy(here.bytes())),
                    (whole_seq, String::from_utf8_lossy(whole.bytes())),
                    "{what}, viewer {buyer:?}"
                );
            }
        }

        /// A seller command through the node, as the seller's console sends it.
        async fn command(&self, cmd: Command) {
            self.live.command(&self.rt, cmd, None).await.unwrap();
        }

        async fn claim(&self, id: &str, who: &str, quantity: u32) {
            let r = req(id, who, "p1", quantity, FLASH).unwrap();
            self.inv
                .claim(&self.rt.id, r, self.clock.now())
                .await
                .unwrap();
        }
    }

    fn buyer(s: &str) -> BuyerId {
        BuyerId::parse(s).unwrap()
    }

    fn flash(product: &str, countdown_s: i64) -> Command {
        Command::StartFlash(FlashSpec {
            product_id: pid(product),
            price: Dong::parse(FLASH).unwrap(),
            duration_s: 600,
            quantity_cap: Some(5),
            countdown_s,
        })
    }

    /// The snapshot a node builds from its own state is the one the whole view makes, through
    /// a flash, claims, a waitlist, a countdown and a close; a later joiner at the same point
    /// gets the same bytes, and a node behind the viewer's read says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_built_here_is_the_whole_views() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path()).await;
        node.agree("a flash on the pinned product, claims and a waitlist place")
            .await;
        let first = node.here(None).await.unwrap();
        assert_eq!(node.here(None).await.unwrap(), first, "the same point");

        // b2 gives a unit back, which goes to b1 off the waitlist: the stock moved after the
        // node's refresh, and b1's read is newer than what the node holds.
        let cancel = node
            .inv
            .cancel(
                &node.rt.id,
                nightmarket_inventory::Cancel {
                    buyer: buyer("b2"),
                    claim_id: ClaimId::parse("c2").unwrap(),
                    now: T0,
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(cancel, nightmarket_domain::CancelDecision::Cancelled { .. }),
            "{cancel:?}"
        );
        let version = node
            .inv
            .buyer_view(&node.rt.id, &buyer("b1"))
            .await
            .unwrap()
            .stock_version;
        assert_eq!(
            node.here(Some(&buyer("b1"))).await,
            Err(Behind::Stock(version))
        );
        node.live.refresh_to(&node.rt, Some(version)).await;
        node.agree("after a promotion").await;

        // An event the node has not seen: a buyer's read is ahead of its public state.
        node.inv
            .command(&node.rt.id, Command::Unpin, T0)
            .await
            .unwrap();
        assert_eq!(node.here(Some(&buyer("b1"))).await, Err(Behind::Events));
        // The refresh repairs the gap from the inventory's history.
        node.live.refresh(&node.rt).await;
        node.agree("after a repaired gap").await;

        // A flash counting down: the price changes at its start, without an event.
        node.command(Command::Pin(pid("p2"))).await;
        node.command(flash("p2", 30)).await;
        node.agree("a flash counting down").await;
        node.clock.advance(30_000);
        node.agree("the flash started").await;

        node.command(Command::Close).await;
        node.agree("closed").await;
    }
}
