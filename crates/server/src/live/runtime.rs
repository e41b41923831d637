//! A show as this node serves it: its identity, its fan-out channel, the gate that orders its
//! commands, and what the periodic refresh has seen of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nightmarket_domain::{Dong, LineupEntry, Millis, SellerId, SequencedEvent, ShowId};
use nightmarket_inventory::BookView;
use nightmarket_live::Frame;
use nightmarket_live::{CatchUpCell, Channel};
use nightmarket_wire::server::{CatchUp, FeedItem, FlashView, LineupView, ShowView, Snapshot};

use crate::convert;
use crate::live::Commander;
use crate::live::inbox::Buyers;
use crate::live::public::PublicState;
use crate::live::snapshot::{
    Behind, OwnPart, Point, PublicPart, TickState, field, flash_now, price_at,
};
use crate::show_stats::ShowCounters;

/// What a show needs at runtime besides its book: identity, its fan-out channel, and the
/// gate that orders its commands.
pub struct ShowRuntime {
    pub id: ShowId,
    pub seller_id: SellerId,
    pub seller_name: String,
    pub title: String,
    /// The show's channel in the live engine.
    pub channel: Channel,
    /// The lineup as the show was opened (products, allotments, limits): a lineup never changes
    /// once the show exists, so snapshots built here take it from this copy and the stock left
    /// from the refresh.
    pub(super) lineup: Vec<LineupEntry>,
    /// The show's public state, folded from its events, for the catch-up below.
    pub(super) public: Mutex<PublicState>,
    /// The newest `catch_up` frame, which the engine sends a viewer that fell behind.
    pub(super) catch_up: Arc<CatchUpCell>,

    /// Commands on one show run one at a time from inventory to publish, so events reach the
    /// channel in sequence order.
    pub(super) gate: tokio::sync::Mutex<()>,
    /// The events of commands whose effects beyond the fan-out (the store's record of a
    /// transition) are still to happen, in the order the gate let the commands through, each
    /// with who commanded and why. At most one entry per event of a command still in flight: every
    /// caller that adds takes too.
    pub(super) follow: Mutex<VecDeque<(SequencedEvent, Commander)>>,
    /// Held while those effects happen, so that they happen in that order without the gate.
    pub(super) following: tokio::sync::Mutex<()>,
    pub(super) tick: Mutex<TickState>,
    /// Held while the conflated values are refreshed from the inventory: refreshes of one show
    /// never overlap (an older read cannot land after a newer one), and joiners that find the
    /// node behind wait for one read instead of each making their own.
    pub(super) refreshing: tokio::sync::Mutex<()>,
    /// Whether this node has asked the event feed to follow the show (distributed mode): once
    /// per runtime, so the feed's requests are bounded by the shows served, not the upgrades.
    pub(super) watched: AtomicBool,
    /// The show's seller's sessions open on this node: while one is, the lifecycle loop tells
    /// the store the seller is present (see `market.seller_absent_close_ms`).
    pub sellers: AtomicUsize,
    /// Since when (the server's clock) the show has been closed, as this node learnt it; a
    /// closed show nobody watches leaves memory after [`super::CLOSED_SHOW_KEPT_MS`].
    pub(super) closed_since: Mutex<Option<Millis>>,
    /// This node's figures of the show for post-show reports.
    pub stats: Arc<ShowCounters>,
    /// This node's viewers of the show per buyer, for waitlist news and leaving.
    pub buyers: Buyers,
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

impl ShowRuntime {
    /// The newest accepted claims this node has seen, oldest first (see `TickState::recent`).
    pub fn recent_claims(&self) -> Vec<FeedItem> {
        self.tick
            .lock()
            .map(|t| t.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether this call is the first to want the show followed across nodes.
    pub(super) fn first_watch(&self) -> bool {
        !self.watched.swap(true, Ordering::AcqRel)
    }

    /// Whether this node has refreshed the show's conflated values at least once.
    pub fn refreshed(&self) -> bool {
        self.tick.lock().is_ok_and(|t| t.stock_version.is_some())
    }
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
