//! One WebSocket session: a viewer or seller watching one show.
//!
//! One task per connection, a `select!` over the client's messages (read with the live
//! engine's `inbound::Reader`), the claim lane's answers, the buyer's inbox, the token's expiry
//! and the shutdown flag. The socket's write half belongs to the live engine
//! ([`nightmarket_live`]): the show's events and conflated values reach the socket without this
//! task, and the session's own frames (answers, errors, notices) go through `Viewer::send`, in
//! order with them. A viewer that stops reading is closed by the engine (`write_timeout`, 4001);
//! one that falls behind what can be bridged, with `resync` (4000), and resumes with its last
//! sequence.
//!
//! Claims and cancellations run off the read loop (see [`ClaimLane`]), so a connection keeps
//! reading, answering pings and closing while the inventory is slow or unreachable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nightmarket_domain::{
    BuyerId, CancelDecision, ClaimId, ClaimRequest, Dong, FlashSpec, JoinDecision, ProductId,
    Quantity, WaitlistOutcome,
};
use nightmarket_inventory::{Cancel, Command, InventoryError, WaitlistJoin, WaitlistLeave};
use nightmarket_live::inbound::{Message, ReadError, Reader};
use nightmarket_live::{AttachOptions, Cells, Frame, Start, StartError, StartFrom, Viewer};
use nightmarket_wire::client::{ClientMessage, classify_parse_error};
use nightmarket_wire::server::{
    Ack, CancelOutcomeKind, CancelResult, ConnectionLimits, ErrorFrame, Hello, ServerMessage,
    WaitlistOutcomeKind, WaitlistResult,
};
use nightmarket_wire::{CloseCode, ErrorCode, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::auth::{Claims, Role};
use crate::convert;
use crate::live::snapshot::{Behind, OwnPart};
use crate::live::{ShowRuntime, frame};
use crate::metrics::inc;
use crate::state::AppState;
use crate::ws::claims::inventory_error;

/// Who is connected and what they may do.
pub struct Peer {
    pub claims: Claims,
    /// Set for viewers: the buyer id, from the token's subject.
    pub buyer: Option<BuyerId>,
    /// Whether this peer may run seller commands on this show.
    pub commands: bool,
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

enum Flow {
    Continue,
    /// The client closed with this code (none given: 1000); the close is answered with it.
    ClientClosed(u16),
}

/// How a session ends: the close frame it sends, if any (code and reason).
type Ending = Option<(u16, &'static str)>;

/// The close code answering a client's close frame that carried none (RFC 6455 §7.4.1).
const NORMAL_CLOSE: u16 = 1000;

fn closing(code: CloseCode) -> Ending {
    Some((code.code(), code.reason()))
}

/// The claims and cancellations of one connection awaiting their answers, each a task of its
/// own, at most `limits.claims_in_flight` at once; their answers come back through `answers` and
/// the session writes them. Created on the first claim (most viewers never claim). Dropped with
/// the session, which aborts every task: a viewer who leaves cancels what has not been sent yet,
/// and what was sent is bounded by its deadline.
struct ClaimLane {
    tasks: JoinSet<()>,
    tx: mpsc::Sender<ServerMessage>,
    answers: mpsc::Receiver<ServerMessage>,
}

/// The next answer of a task in flight; never, for a connection that has not claimed.
async fn next_answer(lane: &mut Option<ClaimLane>) -> Option<ServerMessage> {
    match lane {
        Some(lane) => lane.answers.recv().await,
        None => std::future::pending().await,
    }
}

struct Session {
    state: Arc<AppState>,
    rt: Arc<ShowRuntime>,
    peer: Peer,
    /// The socket's write half, in the show's channel of the live engine.
    viewer: Viewer,
    bucket: Bucket,
    /// Viewers: private frames from the tick (waitlist news), see [`crate::live::inbox`].
    inbox: Option<Arc<crate::live::inbox::Inbox>>,
    lane: Option<ClaimLane>,
}

impl Session {
    /// A sender for one more task's answers, or `None` while `claims_in_flight` tasks are out.
    fn lane_room(&mut self) -> Option<mpsc::Sender<ServerMessage>> {
        let limit = self.state.config().limits.claims_in_flight;
        let lane = self.lane.get_or_insert_with(|| {
            // Each task sends at most two answers (`pending`, then the result).
            let (tx, answers) = mpsc::channel(limit * 2);
            ClaimLane {
                tasks: JoinSet::new(),
                tx,
                answers,
            }
        });
        while lane.tasks.try_join_next().is_some() {}
        (lane.tasks.len() < limit).then(|| lane.tx.clone())
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(lane) = &mut self.lane {
            lane.tasks.spawn(task);
        }
    }

    /// Sends one frame of the session's own, behind everything sent before it. `Err` means the
    /// viewer is closing: the connection is done.
    fn send(&self, frame: Frame) -> Result<(), ()> {
        self.viewer.send(frame).map_err(|_| ())
    }

    /// Counts a claim refused with `code`: in the node's metrics and in the show's statistics
    /// for its post-show report.
    fn refused(&self, code: ErrorCode) {
        self.state.metrics().refused(code);
        self.rt.stats.refused(code);
    }

    // Kept `async` so the handlers read the same whichever way a frame leaves.
    async fn send_msg(&mut self, msg: &ServerMessage) -> Result<(), ()> {
        self.send(frame(msg))
    }

    async fn error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
        req: Option<String>,
    ) -> Result<(), ()> {
        if !matches!(code, ErrorCode::Forbidden | ErrorCode::RateLimited) {
            inc(&self.state.metrics().bad_input);
        }
        self.send_msg(&ServerMessage::Error(ErrorFrame {
            code,
            message: message.into(),
            req,
        }))
        .await
    }

    /// Starts the viewer with a snapshot of the show as of its current sequence: built from this
    /// node's own state when that can answer (see [`crate::live::snapshot`]), with only the
    /// viewer's own claims and places read from the inventory; from the inventory's whole view
    /// otherwise. `Ok(false)`: the engine's history could not serve the start (nothing was
    /// written; try again).
    async fn start_with_snapshot(&self) -> Result<bool, Ending> {
        let live = self.state.live();
        if !self.rt.refreshed() {
            // The first viewers of this show on this node: read the stock and the claim feed
            // now (one read for all who arrive together) rather than join with an empty feed
            // until the next tick.
            live.refresh_to(&self.rt, None).await;
        }
        let own = match &self.peer.buyer {
            None => OwnPart::nobody(),
            Some(buyer) => {
                let Ok(view) = self.state.inventory().buyer_view(&self.rt.id, buyer).await else {
                    return Err(None);
                };
                if !view.my_waitlist.is_empty() {
                    self.rt.buyers.may_wait(buyer);
                }
                OwnPart::of(&view)
            }
        };
        let hello = self.hello("snapshot");
        // The snapshot holds the stock, the feed and the viewer count; older cell values would
        // only go backwards.
        let start = |seq, snapshot| {
            started(
                &self.viewer,
                Start {
                    frames: vec![hello.clone(), snapshot],
                    from: StartFrom::At { seq },
                    cells: Cells::NONE,
                },
            )
        };
        let mut refreshed = false;
        loop {
            match self.rt.join_here(self.state.inventory_now(), &own, start) {
                Ok(result) => return result,
                // Stock moved since the last tick: one refresh, shared with whoever else joins
                // now, brings the node up to what the viewer's own part was read at.
                Err(Behind::Stock(version)) if !refreshed => {
                    live.refresh_to(&self.rt, Some(version)).await;
                    refreshed = true;
                }
                Err(_) => break,
            }
        }
        let Ok(view) = self
            .state
            .inventory()
            .view(
                &self.rt.id,
                self.peer.buyer.as_ref(),
                self.state.inventory_now(),
            )
            .await
        else {
            return Err(None);
        };
        let snap = self.rt.whole_snapshot(&view, self.state.inventory_now());
        if let (Some(buyer), false) = (&self.peer.buyer, view.my_waitlist.is_empty()) {
            self.rt.buyers.may_wait(buyer);
        }
        start(view.seq, frame(&ServerMessage::Snapshot(Box::new(snap))))
    }

    fn hello(&self, start: &str) -> Frame {
        let l = &self.state.config().limits;
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            show_id: self.rt.id.to_string(),
            role: self.peer.claims.role.as_str().to_owned(),
            subject: self.peer.claims.sub.clone(),
            start: start.to_owned(),
            limits: ConnectionLimits {
                max_frame_bytes: l.max_frame_bytes,
                messages_per_second: l.messages_per_second,
                message_burst: l.message_burst,
                max_claim_quantity: l.max_claim_quantity,
            },
        };
        frame(&ServerMessage::Hello(hello))
    }

    async fn incoming(&mut self, msg: Message) -> Result<Flow, ()> {
        let text = match msg {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
            Message::Close(c) => {
                return Ok(Flow::ClientClosed(c.map_or(NORMAL_CLOSE, |c| c.code)));
            }
            // Pings are answered by the reader already.
            Message::Ping(_) | Message::Pong(_) => return Ok(Flow::Continue),
        };
        if !self.bucket.take() {
            inc(&self.state.metrics().rate_limited);
            // A refused claim still gets its definite answer with its claim id, a command its
            // request id, so a client never waits for an answer that will not come.
            let parsed = text.as_deref().map(serde_json::from_str::<ClientMessage>);
            match parsed {
                Some(Ok(ClientMessage::Claim { claim_id, .. })) => {
                    self.refused(ErrorCode::RateLimited);
                    let r = convert::claim_error(
                        &claim_id,
                        ErrorCode::RateLimited,
                        "too many messages; retry shortly",
                    );
                    self.send_msg(&ServerMessage::ClaimResult(r)).await?;
                }
                Some(Ok(ClientMessage::Cancel { claim_id })) => {
                    let r = CancelResult {
                        claim_id,
                        outcome: CancelOutcomeKind::Refused,
                        reason: Some(ErrorCode::RateLimited),
                        stock_left: None,
                        message: Some("too many messages; retry shortly".into()),
                    };
                    self.send_msg(&ServerMessage::CancelResult(r)).await?;
                }
                Some(Ok(
                    ClientMessage::WaitlistJoin { product_id, .. }
                    | ClientMessage::WaitlistLeave { product_id },
                )) => {
                    let r = waitlist_refused(
                        &product_id,
                        ErrorCode::RateLimited,
                        "too many messages; retry shortly",
                    );
                    self.send_msg(&ServerMessage::WaitlistResult(r)).await?;
                }
                other => {
                    let req = other
                        .and_then(Result::ok)
                        .and_then(|m| m.req().map(str::to_owned));
                    self.error(ErrorCode::RateLimited, "too many messages; slow down", req)
                        .await?;
                }
            }
            return Ok(Flow::Continue);
        }
        let Some(text) = text else {
            self.error(ErrorCode::BinaryNotSupported, "send JSON text frames", None)
                .await?;
            return Ok(Flow::Continue);
        };
        let limit = self.state.config().limits.max_frame_bytes;
        if text.len() > limit {
            self.error(
                ErrorCode::FrameTooLarge,
                format!("frames are at most {limit} bytes"),
                None,
            )
            .await?;
            return Ok(Flow::Continue);
        }
        let parsed: ClientMessage = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                let (code, message, req) = classify_parse_error(&text, &e);
                self.error(code, message, req).await?;
                return Ok(Flow::Continue);
            }
        };
        let req = parsed.req().map(str::to_owned);
        match parsed {
            ClientMessage::Claim {
                claim_id,
                product_id,
                quantity,
                price,
            } => {
                self.claim(claim_id, product_id, quantity, price).await?;
            }
            ClientMessage::Cancel { claim_id } => self.cancel(claim_id).await?,
            ClientMessage::WaitlistJoin {
                product_id,
                quantity,
            } => self.waitlist_join(product_id, quantity).await?,
            ClientMessage::WaitlistLeave { product_id } => self.waitlist_leave(product_id).await?,
            ClientMessage::Pin { product_id, .. } => {
                let Some(product) = self.parse_product(&product_id, req.clone()).await? else {
                    return Ok(Flow::Continue);
                };
                self.seller_command(Command::Pin(product), req).await?;
            }
            ClientMessage::Unpin { .. } => self.seller_command(Command::Unpin, req).await?,
            ClientMessage::EndFlash { .. } => {
                let cmd = Command::EndFlash {
                    reason: nightmarket_domain::EndReason::EndedBySeller,
                    only: None,
                };
                self.seller_command(cmd, req).await?;
            }
            ClientMessage::StartFlash {
                product_id,
                price,
                duration_s,
                quantity_cap,
                countdown_s,
                ..
            } => {
                let Some(product) = self.parse_product(&product_id, req.clone()).await? else {
                    return Ok(Flow::Continue);
                };
                let price = match Dong::parse(price) {
                    Ok(p) => p,
                    Err(e) => {
                        self.error(ErrorCode::BadRequest, format!("price: {e}"), req)
                            .await?;
                        return Ok(Flow::Continue);
                    }
                };
                let cap = match quantity_cap {
                    None => None,
                    Some(c)
                        if (1..=i64::from(nightmarket_domain::book::MAX_STOCK)).contains(&c) =>
                    {
                        Some(c as u32)
                    }
                    Some(c) => {
                        self.error(
                            ErrorCode::BadRequest,
                            format!(
                                "quantity_cap must be 1 to {}, got {c}",
                                nightmarket_domain::book::MAX_STOCK
                            ),
                            req,
                        )
                        .await?;
                        return Ok(Flow::Continue);
                    }
                };
                let spec = FlashSpec {
                    product_id: product,
                    price,
                    duration_s,
                    quantity_cap: cap,
                    countdown_s: countdown_s.unwrap_or(0),
                };
                self.seller_command(Command::StartFlash(spec), req).await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn parse_product(
        &mut self,
        raw: &str,
        req: Option<String>,
    ) -> Result<Option<ProductId>, ()> {
        match ProductId::parse(raw) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                self.error(ErrorCode::BadRequest, format!("product_id: {e}"), req)
                    .await?;
                Ok(None)
            }
        }
    }

    async fn seller_command(&mut self, cmd: Command, req: Option<String>) -> Result<(), ()> {
        if !self.peer.commands {
            return self
                .error(
                    ErrorCode::Forbidden,
                    "only this show's seller may command it",
                    req,
                )
                .await;
        }
        let actor = format!("seller:{}", self.peer.claims.sub);
        match self.state.shows().command(&self.rt, cmd, &actor).await {
            Ok((_, seq)) => self.send_msg(&ServerMessage::Ack(Ack { req, seq })).await,
            Err(e) => {
                let (code, message) = inventory_error(e);
                self.error(code, message, req).await
            }
        }
    }

    async fn claim(
        &mut self,
        claim_id: String,
        product_id: String,
        quantity: i64,
        price: i64,
    ) -> Result<(), ()> {
        let Some(buyer) = self.peer.buyer.clone() else {
            self.refused(ErrorCode::Forbidden);
            let r = convert::claim_error(&claim_id, ErrorCode::Forbidden, "only viewers claim");
            return self.send_msg(&ServerMessage::ClaimResult(r)).await;
        };
        let max = self.state.config().limits.max_claim_quantity;
        let parsed = (|| {
            Ok::<_, String>(ClaimRequest {
                claim_id: ClaimId::parse_client(claim_id.clone())
                    .map_err(|e| format!("claim_id: {e}"))?,
                buyer,
                product_id: ProductId::parse(product_id).map_err(|e| format!("product_id: {e}"))?,
                quantity: Quantity::parse(quantity, max).map_err(|e| format!("quantity: {e}"))?,
                seen_price: Dong::parse(price).map_err(|e| format!("price: {e}"))?,
            })
        })();
        let req = match parsed {
            Ok(r) => r,
            Err(message) => {
                inc(&self.state.metrics().bad_input);
                self.refused(ErrorCode::BadRequest);
                let r = convert::claim_error(&claim_id, ErrorCode::BadRequest, message);
                return self.send_msg(&ServerMessage::ClaimResult(r)).await;
            }
        };
        let Some(out) = self.lane_room() else {
            return self.busy_claim(&claim_id).await;
        };
        let task = crate::ws::claims::decide(self.state.clone(), self.rt.clone(), req, out);
        self.spawn(task);
        Ok(())
    }

    /// A claim over the connection's `claims_in_flight`: refused at once, retryable.
    async fn busy_claim(&mut self, claim_id: &str) -> Result<(), ()> {
        inc(&self.state.metrics().rate_limited);
        self.refused(ErrorCode::RateLimited);
        let limit = self.state.config().limits.claims_in_flight;
        let r = convert::claim_error(
            claim_id,
            ErrorCode::RateLimited,
            format!("{limit} claims already await their answers; retry once they arrive"),
        );
        self.send_msg(&ServerMessage::ClaimResult(r)).await
    }

    async fn cancel(&mut self, claim_id: String) -> Result<(), ()> {
        let refuse = |code, message| cancel_refused(&claim_id, code, message);
        let Some(buyer) = self.peer.buyer.clone() else {
            let r = refuse(
                ErrorCode::Forbidden,
                "only viewers cancel their claims".into(),
            );
            return self.send_msg(&ServerMessage::CancelResult(r)).await;
        };
        let id = match ClaimId::parse(claim_id.clone()) {
            Ok(id) => id,
            Err(e) => {
                inc(&self.state.metrics().bad_input);
                let r = refuse(ErrorCode::BadRequest, format!("claim_id: {e}"));
                return self.send_msg(&ServerMessage::CancelResult(r)).await;
            }
        };
        let Some(out) = self.lane_room() else {
            let limit = self.state.config().limits.claims_in_flight;
            inc(&self.state.metrics().rate_limited);
            let r = refuse(
                ErrorCode::RateLimited,
                format!("{limit} claims already await their answers; retry once they arrive"),
            );
            return self.send_msg(&ServerMessage::CancelResult(r)).await;
        };
        let (state, rt) = (self.state.clone(), self.rt.clone());
        self.spawn(async move {
            let r = cancel(&state, &rt, &buyer, &id, claim_id).await;
            let _ = out.send(ServerMessage::CancelResult(r)).await;
        });
        Ok(())
    }
}

/// The answer to a cancellation refused with `code`.
fn cancel_refused(claim_id: &str, code: ErrorCode, message: String) -> CancelResult {
    CancelResult {
        claim_id: claim_id.to_owned(),
        outcome: CancelOutcomeKind::Refused,
        reason: Some(code),
        stock_left: None,
        message: Some(message),
    }
}

/// Runs a cancellation, bounded like a claim by `claim_deadline_ms`. A cancellation has no
/// deadline inside the inventory: one answered `unavailable` may still take effect, and a retry
/// says so (`cancelled`, "already cancelled"); giving back units twice is impossible.
async fn cancel(
    state: &Arc<AppState>,
    rt: &Arc<ShowRuntime>,
    buyer: &BuyerId,
    id: &ClaimId,
    claim_id: String,
) -> CancelResult {
    let refuse = |code, message| cancel_refused(&claim_id, code, message);
    let deadline = Duration::from_millis(state.config().limits.claim_deadline_ms);
    let decided = match tokio::time::timeout(
        deadline,
        state.inventory().cancel(
            &rt.id,
            Cancel {
                buyer: buyer.clone(),
                claim_id: id.clone(),
                now: state.inventory_now(),
            },
        ),
    )
    .await
    {
        Ok(decided) => decided,
        Err(_) => Err(InventoryError::Unknown(format!(
            "not answered within {} ms; it may still take effect, retry to learn",
            deadline.as_millis()
        ))),
    };
    match decided {
        Ok(CancelDecision::Cancelled {
            stock_left,
            waitlist,
            ..
        }) => {
            inc(&state.metrics().cancels);
            // Promoted buyers hear of it from the tick on whichever node they are; only a
            // flash cap a promotion used up is this node's to end, as for a claim.
            for outcome in &waitlist {
                if let WaitlistOutcome::Promoted {
                    flash_exhausted: Some(flash_id),
                    ..
                } = outcome
                {
                    state.live().end_capped_flash(rt.clone(), *flash_id);
                }
            }
            CancelResult {
                claim_id: claim_id.clone(),
                outcome: CancelOutcomeKind::Cancelled,
                reason: None,
                stock_left: Some(stock_left),
                message: None,
            }
        }
        Ok(CancelDecision::AlreadyCancelled { stock_left, .. }) => CancelResult {
            claim_id: claim_id.clone(),
            outcome: CancelOutcomeKind::Cancelled,
            reason: None,
            stock_left: Some(stock_left),
            message: Some("already cancelled".into()),
        },
        Ok(CancelDecision::UnknownClaim) => refuse(
            ErrorCode::UnknownClaim,
            "no such claim of yours in this show".into(),
        ),
        Ok(CancelDecision::ShowNotLive) => refuse(
            ErrorCode::ShowNotLive,
            "claims can be cancelled only while the show is live".into(),
        ),
        Err(e) => {
            let (code, message) = inventory_error(e);
            refuse(code, message)
        }
    }
}

impl Session {
    async fn waitlist_join(&mut self, product_id: String, quantity: i64) -> Result<(), ()> {
        let Some(buyer) = self.peer.buyer.clone() else {
            let r = waitlist_refused(&product_id, ErrorCode::Forbidden, "only viewers wait");
            return self.send_msg(&ServerMessage::WaitlistResult(r)).await;
        };
        let max = self.state.config().limits.max_claim_quantity;
        let parsed = ProductId::parse(product_id.clone())
            .map_err(|e| format!("product_id: {e}"))
            .and_then(|p| {
                Quantity::parse(quantity, max)
                    .map(|q| (p, q))
                    .map_err(|e| format!("quantity: {e}"))
            });
        let (product, quantity) = match parsed {
            Ok(v) => v,
            Err(message) => {
                inc(&self.state.metrics().bad_input);
                let r = waitlist_refused(&product_id, ErrorCode::BadRequest, message);
                return self.send_msg(&ServerMessage::WaitlistResult(r)).await;
            }
        };
        let decision = self
            .state
            .inventory()
            .waitlist_join(
                &self.rt.id,
                WaitlistJoin {
                    buyer: buyer.clone(),
                    product: product.clone(),
                    quantity,
                    now: self.state.inventory_now(),
                },
            )
            .await;
        let result = match decision {
            Ok(JoinDecision::Joined { entry, position })
            | Ok(JoinDecision::AlreadyWaiting { entry, position }) => {
                self.rt.buyers.may_wait(&buyer);
                WaitlistResult {
                    product_id,
                    outcome: WaitlistOutcomeKind::Joined,
                    position: Some(position),
                    quantity: Some(entry.quantity),
                    claim_id: None,
                    unit_price: Some(entry.price.get()),
                    reason: None,
                    message: None,
                }
            }
            Ok(JoinDecision::Refused(r)) => {
                let code = convert::waitlist_refusal_code(r);
                let message = match code {
                    ErrorCode::NotSoldOut => "units are left: claim them instead",
                    ErrorCode::WaitlistFull => "the waitlist for this product is full",
                    ErrorCode::LimitExceeded => {
                        "you already hold as many of this product as you may"
                    }
                    ErrorCode::ShowNotLive => "waitlists are open only while the show is live",
                    _ => "not in this show's lineup",
                };
                waitlist_refused(&product_id, code, message)
            }
            Err(e) => {
                let (code, message) = inventory_error(e);
                waitlist_refused(&product_id, code, message)
            }
        };
        self.send_msg(&ServerMessage::WaitlistResult(result)).await
    }

    async fn waitlist_leave(&mut self, product_id: String) -> Result<(), ()> {
        let Some(buyer) = self.peer.buyer.clone() else {
            let r = waitlist_refused(&product_id, ErrorCode::Forbidden, "only viewers wait");
            return self.send_msg(&ServerMessage::WaitlistResult(r)).await;
        };
        let product = match ProductId::parse(product_id.clone()) {
            Ok(p) => p,
            Err(e) => {
                inc(&self.state.metrics().bad_input);
                let r = waitlist_refused(
                    &product_id,
                    ErrorCode::BadRequest,
                    format!("product_id: {e}"),
                );
                return self.send_msg(&ServerMessage::WaitlistResult(r)).await;
            }
        };
        let result = match self
            .state
            .inventory()
            .waitlist_leave(
                &self.rt.id,
                WaitlistLeave {
                    buyer: buyer.clone(),
                    product: Some(product.clone()),
                    now: self.state.inventory_now(),
                },
            )
            .await
        {
            Ok(gone) => WaitlistResult {
                product_id,
                outcome: WaitlistOutcomeKind::Left,
                position: None,
                quantity: None,
                claim_id: None,
                unit_price: None,
                reason: None,
                // Leaving is idempotent: not waiting is not an error.
                message: gone
                    .is_empty()
                    .then(|| "you were not on this waitlist".to_owned()),
            },
            Err(e) => {
                let (code, message) = inventory_error(e);
                waitlist_refused(&product_id, code, message)
            }
        };
        self.send_msg(&ServerMessage::WaitlistResult(result)).await
    }
}

fn waitlist_refused(
    product_id: &str,
    code: ErrorCode,
    message: impl Into<String>,
) -> WaitlistResult {
    WaitlistResult {
        product_id: product_id.to_owned(),
        outcome: WaitlistOutcomeKind::Refused,
        position: None,
        quantity: None,
        claim_id: None,
        unit_price: None,
        reason: Some(code),
        message: Some(message.into()),
    }
}

/// Runs a session until the client leaves, falls behind, or the server shuts down. `tcp` is the
/// upgraded connection; `already_read` the bytes hyper read past the upgrade request, handed to
/// the reader and then let go.
pub async fn run(
    state: Arc<AppState>,
    rt: Arc<ShowRuntime>,
    peer: Peer,
    tcp: TcpStream,
    already_read: Vec<u8>,
    answer: Option<bytes::Bytes>,
    last_seq: Option<u64>,
) {
    let _session = state.sessions().enter();
    inc(&state.metrics().connections_total);
    state.metrics().connections_open.increment(1.0);
    let l = &state.config().limits;
    let buyer = peer.buyer.clone();
    let inbox = buyer.as_ref().map(|b| rt.buyers.enter(b));
    let seller = peer.commands;
    if seller {
        rt.sellers.fetch_add(1, Ordering::Relaxed);
        seller_seen(&state, &rt).await;
    }
    // Attached before anything is read, so no event slips between the attachment and the
    // start (snapshot or resume): from here on every event is kept for this viewer.
    let (read, write) = tcp.into_split();
    let viewer = rt.channel.attach(
        write,
        AttachOptions {
            counted: buyer.is_some(),
            prefix: answer,
        },
    );
    let mut reader = Reader::new(read, &already_read, state.live().max_message());
    drop(already_read);
    let mut s = Session {
        bucket: Bucket::new(l.messages_per_second, l.message_burst),
        lane: None,
        state: state.clone(),
        rt: rt.clone(),
        viewer,
        peer,
        inbox: inbox.clone(),
    };
    if let Some((code, reason)) = session_loop(&mut s, &mut reader, last_seq).await {
        // Bounded by the engine's close grace: a stuck peer does not hold shutdown.
        s.viewer.close(code, reason).await;
    }
    drop(s);
    if let (Some(buyer), Some(inbox)) = (buyer, inbox)
        && rt.buyers.exit(&buyer, &inbox).may_leave_waitlists
    {
        crate::ws::waitlist::leave_later(&state, rt.clone(), buyer);
    }
    if seller {
        rt.sellers.fetch_sub(1, Ordering::Relaxed);
        // The seller's absence counts from when they left, not from the last periodic mark.
        seller_seen(&state, &rt).await;
    }
    state.metrics().connections_open.decrement(1.0);
}

/// Tells the store the show's seller is here now. A failure only delays the mark to the
/// lifecycle loop's next pass, which repeats it while the seller stays connected.
async fn seller_seen(state: &AppState, rt: &ShowRuntime) {
    if let Err(e) = state.store().seller_seen(&rt.id, state.now()).await {
        tracing::warn!(show = %rt.id, error = %e, "cannot record the seller's presence");
    }
}

/// The conflated values a resumed connection is sent at once (see docs/protocol.md, "Resume").
const RESUME_CELLS: Cells = Cells {
    stock: true,
    viewers: true,
    feed: false,
};

/// How many times a start is tried before the session gives up (each try that fails wrote
/// nothing; only a burst of events past the whole kept history between a snapshot and its
/// start makes one fail).
const START_TRIES: usize = 3;

/// Starts the viewer: `Ok(false)` if the engine's history cannot serve this start (nothing was
/// written; try another), `Err` if the viewer is gone.
fn started(viewer: &Viewer, start: Start) -> Result<bool, Ending> {
    match viewer.start(start) {
        Ok(()) => Ok(true),
        Err(StartError::Gap { .. } | StartError::Ahead { .. }) => Ok(false),
        Err(_) => Err(None),
    }
}

/// Brings a new session up to date: the events it missed (resume) or a snapshot, then every
/// later event, all written by the engine. `Err` with the close to end with.
async fn start(s: &mut Session, last_seq: Option<u64>) -> Result<(), Ending> {
    if let Some(after) = last_seq {
        // Stock and the viewer count may have moved while away: their latest values follow the
        // events at once. The feed's missed items are not news any more.
        let resume = Start {
            frames: vec![s.hello("resume")],
            from: StartFrom::Resume { after },
            cells: RESUME_CELLS,
        };
        if started(&s.viewer, resume)? {
            return Ok(());
        }
        // The node's history did not reach back (or the show is not that far on this node
        // yet); the inventory's history may.
        let limit = s.state.config().limits.event_history;
        if let Ok(Some(events)) = s
            .state
            .inventory()
            .events_after(&s.rt.id, after, limit)
            .await
            && let Some(newest) = events.last().map(|e| e.seq)
            && events.first().is_some_and(|e| e.seq == after + 1)
        {
            let mut frames = vec![s.hello("resume")];
            frames.extend(
                events
                    .iter()
                    .map(|e| frame(&ServerMessage::Event(convert::event_frame(e)))),
            );
            let from_inventory = Start {
                frames,
                from: StartFrom::At { seq: newest },
                cells: RESUME_CELLS,
            };
            if started(&s.viewer, from_inventory)? {
                return Ok(());
            }
        }
    }
    for _ in 0..START_TRIES {
        if s.start_with_snapshot().await? {
            return Ok(());
        }
    }
    Err(closing(CloseCode::Resync))
}

/// The longest a session lasts, whatever its token's `exp` says: a year.
const SESSION_LONGEST_MS: i64 = 365 * 24 * 3600 * 1000;

async fn session_loop(s: &mut Session, reader: &mut Reader, last_seq: Option<u64>) -> Ending {
    // `last_seq=0` means the client has seen nothing: it needs a snapshot, not a replay.
    let last_seq = last_seq.filter(|&seq| seq > 0);
    // Boxed for the same reason as message handling below: the start runs once.
    if let Err(ending) = Box::pin(start(s, last_seq)).await {
        return ending;
    }

    let mut shutdown = s.state.shutdown();
    // On the server's clock, the one every token check reads: a test's manual clock expires
    // the session exactly when it passes the token's expiry. Tokens may be minted far into the
    // future; a year is as long as any session lasts (the protocol says so).
    let expires_at = s
        .peer
        .claims
        .exp
        .saturating_mul(1000)
        .min(s.state.now().saturating_add(SESSION_LONGEST_MS));
    let expiry = crate::clock::sleep_until(s.state.clock().clone(), expires_at);
    let stop = crate::shutdown::stopped(&mut shutdown);
    let inbox = s.inbox.clone();
    let news = inbox_ready(inbox.as_deref());
    tokio::pin!(expiry, stop, news);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => return closing(CloseCode::Restart),
            () = &mut expiry => return closing(CloseCode::TokenExpired),
            // The engine closed the viewer (it stopped reading, could not be caught up, or the
            // peer went away): its close frame is on its way already.
            () = s.viewer.closing() => return None,
            Some(answer) = next_answer(&mut s.lane) => {
                if s.send_msg(&answer).await.is_err() {
                    return None;
                }
            }
            incoming = reader.next(&s.viewer) => {
                let msg = match incoming {
                    Ok(Some(m)) => m,
                    // Over the hard frame limit, or a protocol violation: the stream cannot
                    // continue.
                    Err(ReadError::Decode(e)) => return Some((e.close_code(), e.reason())),
                    Err(ReadError::Io(_)) | Ok(None) => return None,
                };
                // Boxed: handling a message (a claim, a seller command) needs far more state
                // than waiting does, and an unboxed future would make every idle viewer's task
                // as large as the largest handler.
                match Box::pin(s.incoming(msg)).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::ClientClosed(code)) => return Some((code, "")),
                    Err(()) => return None,
                }
            }
            () = &mut news => {
                news.set(inbox_ready(inbox.as_deref()));
                for f in inbox.as_deref().map(crate::live::inbox::Inbox::take).unwrap_or_default() {
                    if s.send(f).is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// Resolves when the session's inbox may hold frames; never for a session without one.
async fn inbox_ready(inbox: Option<&crate::live::inbox::Inbox>) {
    match inbox {
        Some(i) => i.ready().await,
        None => std::future::pending().await,
    }
}

/// Whether a token's holder may watch and command a show.
pub fn peer_for(claims: Claims, rt: &ShowRuntime) -> Peer {
    let buyer = if claims.role == Role::Viewer {
        claims.buyer()
    } else {
        None
    };
    let commands = claims.role == Role::Seller && claims.sub == rt.seller_id.as_str();
    Peer {
        claims,
        buyer,
        commands,
    }
}
