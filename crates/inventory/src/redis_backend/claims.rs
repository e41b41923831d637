//! Claims in Redis mode, batched per show.
//!
//! Claims on one show that arrive while a script call for that show is out wait in the show's
//! queue; when the call comes back, up to [`CLAIM_BATCH`] of them go in the next call, which
//! decides each in order and answers each on its own (`claims.lua`). So a busy show costs one
//! round trip and one script start per batch rather than per claim, and its claims still run
//! one after another in arrival order, each judged by Redis's `TIME` against its own deadline.
//! Calls for different shows do not wait for each other: each show has its own queue and its
//! own call out, and the calls share the connection's pipeline. A lone claim on an idle show is
//! sent by its own task at once; only when claims queue behind it does a driver task take over
//! the show, until its queue is empty.
//!
//! A call that fails leaves every claim in it an unknown outcome (`Unknown`), exactly as one
//! claim alone: the script may have run. The caller sends it again with the same id and
//! deadline, and `duplicate` or `expired` tells. A claim whose caller has gone (its connection
//! closed) before its batch was sent is dropped from the queue: a claim not sent yet is never
//! sent.
//!
//! The hot path allocates per batch, not per claim, wherever it can: the command is written
//! into a buffer the show's batches reuse, from the request's own texts; the reply is a flat
//! array of integers (a duplicate's record is the one text), and an accepted claim's record is
//! built from the request it answers. What remains per claim is the answer's channel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nightmarket_domain::{
    BuyerId, ClaimAccepted, ClaimDecision, ClaimId, ClaimRecord, ClaimRequest, Dong, Millis,
    ProductId, Refusal, RefusalReason, ShowId,
};
use redis::Value;
use redis::aio::ConnectionLike;
use tokio::sync::oneshot;

use super::{Link, internal, key_names, script_failed};
use crate::{InventoryError, Result};

/// Most claims one script call decides. Redis runs nothing else while a script runs, so a
/// batch is bounded in time too: at some 10 µs of Redis per claim, 64 claims hold it under a
/// millisecond.
pub(super) const CLAIM_BATCH: usize = 64;
/// Most claims of one show waiting for their batch; past it a claim is refused `unavailable`
/// at once (it was never sent). Each node bounds its claims in flight per connection too; this
/// bounds the sum, so a Redis that stalls cannot make a node's memory grow with its viewers.
pub(super) const CLAIMS_QUEUED: usize = 8_192;
/// Values per claim in the script's reply (see `claims.lua`).
const CLAIM_REPLY: usize = 6;
/// Arguments per claim in the script's call.
const CLAIM_ARGS: usize = 7;

// Outcome and refusal codes, as `claims.lua` numbers them.
const ACCEPTED: i64 = 1;
const DUPLICATE: i64 = 2;
const REFUSED: i64 = 3;
const EXPIRED: i64 = 4;
const REASONS: [RefusalReason; 7] = [
    RefusalReason::ShowNotLive,
    RefusalReason::UnknownProduct,
    RefusalReason::NotPinned,
    RefusalReason::StalePrice,
    RefusalReason::LimitExceeded,
    RefusalReason::SoldOut,
    RefusalReason::ClaimIdTaken,
];

type Answer = Result<ClaimDecision>;

/// A claim waiting for its batch.
struct Pending {
    req: ClaimRequest,
    /// The scripted time (tests), or `None`: Redis's `TIME` decides.
    now: Option<Millis>,
    deadline: Option<Millis>,
    answer: oneshot::Sender<Answer>,
}

/// Every show's queue of claims, and how to send them.
pub(super) struct Lanes {
    link: Arc<Link>,
    script: redis::Script,
    prefix: String,
    /// A show is here while its driver runs: from the claim that found no call out to the
    /// moment its driver finds the queue empty.
    queued: Mutex<HashMap<ShowId, VecDeque<Pending>>>,
}

impl Lanes {
    pub(super) fn new(link: Arc<Link>, script: redis::Script, prefix: &str) -> Self {
        Self {
            link,
            script,
            prefix: prefix.to_owned(),
            queued: Mutex::new(HashMap::new()),
        }
    }

    fn queued(&self) -> MutexGuard<'_, HashMap<ShowId, VecDeque<Pending>>> {
        // Nothing panics while holding it; were it ever poisoned, the map is still whole.
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a claim on `show` and waits for its answer. The first claim of an idle show
    /// sends it itself, then hands the show to a driver task if claims queued meanwhile;
    /// later ones join the queue.
    pub(super) async fn claim(
        self: &Arc<Self>,
        show: &ShowId,
        req: ClaimRequest,
        now: Option<Millis>,
        deadline: Option<Millis>,
    ) -> Answer {
        let (answer, told) = oneshot::channel();
        let pending = Pending {
            req,
            now,
            deadline,
            answer,
        };
        let start = {
            let mut queued = self.queued();
            match queued.get_mut(show) {
                Some(queue) if queue.len() >= CLAIMS_QUEUED => {
                    return Err(InventoryError::Unavailable(format!(
                        "redis: {CLAIMS_QUEUED} claims of show {show} are waiting already"
                    )));
                }
                Some(queue) => {
                    queue.push_back(pending);
                    false
                }
                None => {
                    queued.insert(show.clone(), VecDeque::from([pending]));
                    true
                }
            }
        };
        if start {
            // The show was idle: this claim's own task sends the show's first batch (this claim,
            // and any that queued in the meantime), so a lone claim costs no task to start and
            // no thread to wake. Claims that queue while it is out go on in a driver task.
            let mut driver = Driver::new(self.clone(), show.clone(), true);
            if driver.take() {
                driver.decide().await;
            }
            if driver.owns {
                driver.inline = false;
                tokio::spawn(driver.run());
            }
        }
        told.await.unwrap_or_else(|_| {
            // Its batch ended without answering: the task sending it was dropped (its caller
            // left, or the runtime is shutting down), and the call may have gone out.
            Err(InventoryError::Unknown(
                "redis: the claim's batch ended without an answer".into(),
            ))
        })
    }

    /// One script call for `batch`; answers every claim in it and empties it.
    async fn decide(&self, keys: &[String], cmd: &mut redis::Cmd, batch: &mut Vec<Pending>) {
        cmd.clear();
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(keys.len());
        for key in keys {
            cmd.arg(key.as_str());
        }
        for p in batch.iter() {
            let r = &p.req;
            cmd.arg(r.claim_id.as_str())
                .arg(r.buyer.as_str())
                .arg(r.product_id.as_str())
                .arg(r.quantity.get())
                .arg(r.seen_price.get());
            for value in [p.now, p.deadline] {
                match value {
                    Some(ms) => cmd.arg(ms),
                    None => cmd.arg(b"".as_slice()),
                };
            }
        }
        debug_assert_eq!(
            cmd.args_iter().len(),
            3 + keys.len() + CLAIM_ARGS * batch.len()
        );

        let reply = match self.call(cmd).await {
            Ok(Value::Array(values)) if values.len() == CLAIM_REPLY * batch.len() => Ok(values),
            Ok(other) => Err(Failure::Internal(format!(
                "claims reply of unexpected shape: {other:?}"
            ))),
            Err(e) => Err(Failure::Call(e)),
        };
        let values = match reply {
            Ok(values) => values,
            Err(failure) => {
                for p in batch.drain(..) {
                    let _ = p.answer.send(Err(failure.error()));
                }
                return;
            }
        };
        // Acceptances (and duplicates, whose original may not have replicated yet) count only
        // once the replicas have them; until then their outcome, as the caller sees it, is
        // unknown, and a resend answers once they have.
        let took = values
            .chunks(CLAIM_REPLY)
            .any(|v| matches!(v.first(), Some(Value::Int(ACCEPTED | DUPLICATE))));
        let replicated = if took {
            self.link.replicated(&keys[0]).await.map_err(|e| match e {
                InventoryError::Unavailable(m) => InventoryError::Unknown(m),
                other => other,
            })
        } else {
            Ok(())
        };
        for (p, slot) in batch.drain(..).zip(values.chunks(CLAIM_REPLY)) {
            let answer = match (&replicated, slot.first()) {
                (Err(e), Some(Value::Int(ACCEPTED | DUPLICATE))) => Err(same(e)),
                _ => decode(p.req, slot),
            };
            let _ = p.answer.send(answer);
        }
    }

    /// Runs the command, loading the script first where Redis lacks it (after a restart, or on
    /// a master that took over), and tells the link how the round trip went.
    async fn call(&self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        let mut conn = self.link.conn();
        let mut reply = send(&mut conn, cmd).await;
        if reply
            .as_ref()
            .is_err_and(|e| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
        {
            reply = match self.script.load_async(&mut conn).await {
                Ok(_) => send(&mut conn, cmd).await,
                Err(e) => Err(e),
            };
        }
        self.link.observe(&reply);
        reply
    }
}

/// One command's reply, with an error reply (a script's error, NOSCRIPT) as an error.
async fn send(conn: &mut impl ConnectionLike, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
    match conn.req_packed_command(cmd).await? {
        Value::ServerError(e) => Err(e.into()),
        value => Ok(value),
    }
}

/// Sends a show's queued claims, a batch at a time, until the queue is empty. While the show
/// is in `queued`, exactly one driver owns it.
struct Driver {
    lanes: Arc<Lanes>,
    show: ShowId,
    /// The show's key names, built once per driver rather than per call.
    keys: [String; 13],
    batch: Vec<Pending>,
    /// The call, rewritten in place for each batch.
    cmd: redis::Cmd,
    /// Whether the show's queue is still this driver's to empty.
    owns: bool,
    /// Running in a claim's own task, which its caller may drop (see `Drop`).
    inline: bool,
}

impl Driver {
    fn new(lanes: Arc<Lanes>, show: ShowId, inline: bool) -> Self {
        let keys = key_names(&lanes.prefix, &show);
        Self {
            lanes,
            show,
            keys,
            batch: Vec::with_capacity(CLAIM_BATCH),
            cmd: redis::Cmd::new(),
            owns: true,
            inline,
        }
    }

    /// Takes the next batch off the queue; with none left, lets the show go idle (false).
    fn take(&mut self) -> bool {
        let mut queued = self.lanes.queued();
        let Some(queue) = queued.get_mut(&self.show) else {
            self.owns = false;
            return false;
        };
        while self.batch.len() < CLAIM_BATCH {
            match queue.pop_front() {
                // Its caller is gone: never sent.
                Some(p) if p.answer.is_closed() => {}
                Some(p) => self.batch.push(p),
                None => break,
            }
        }
        if self.batch.is_empty() {
            queued.remove(&self.show);
            self.owns = false;
            return false;
        }
        true
    }

    async fn decide(&mut self) {
        self.lanes
            .decide(&self.keys, &mut self.cmd, &mut self.batch)
            .await;
    }

    async fn run(mut self) {
        while self.take() {
            self.decide().await;
        }
    }
}

impl Drop for Driver {
    /// A driver dropped while it still owns the queue: the claims of the batch it was sending
    /// hear `Unknown` (their senders go with it; the call may have gone out). The claims still
    /// queued are taken on by a driver task if this one ran in a claim's task whose caller left;
    /// otherwise (the runtime shutting down) they are let go and hear `Unknown`, and the next
    /// claim on the show starts afresh.
    fn drop(&mut self) {
        if !self.owns {
            return;
        }
        if self.inline
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(Driver::new(self.lanes.clone(), self.show.clone(), false).run());
            return;
        }
        self.lanes.queued().remove(&self.show);
    }
}

/// Why a whole batch went unanswered.
enum Failure {
    Call(redis::RedisError),
    Internal(String),
}

impl Failure {
    /// The error each claim of the batch gets.
    fn error(&self) -> InventoryError {
        match self {
            Failure::Call(e) => script_failed(e),
            Failure::Internal(m) => internal(m),
        }
    }
}

/// The same error again, for another claim of the batch.
fn same(e: &InventoryError) -> InventoryError {
    match e {
        InventoryError::Unknown(m) => InventoryError::Unknown(m.clone()),
        InventoryError::Unavailable(m) => InventoryError::Unavailable(m.clone()),
        other => InventoryError::Internal(other.to_string()),
    }
}

fn int(slot: &[Value], i: usize) -> Result<i64> {
    match slot.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(internal(format!(
            "claims reply: {other:?} where a number was due"
        ))),
    }
}

fn count(slot: &[Value], i: usize) -> Result<u32> {
    let n = int(slot, i)?;
    u32::try_from(n).map_err(|_| internal(format!("claims reply: {n} is not a count")))
}

/// 0 stands for none: flash ids start at 1.
fn flash(slot: &[Value], i: usize) -> Result<Option<u64>> {
    Ok(u64::try_from(int(slot, i)?).ok().filter(|&id| id > 0))
}

/// One claim's answer from its [`CLAIM_REPLY`] values.
fn decode(req: ClaimRequest, slot: &[Value]) -> Answer {
    match int(slot, 0)? {
        ACCEPTED => Ok(ClaimDecision::Accepted(ClaimAccepted {
            record: ClaimRecord {
                quantity: req.quantity.get(),
                claim_id: req.claim_id,
                buyer: req.buyer,
                product_id: req.product_id,
                unit_price: Dong::parse(int(slot, 1)?).map_err(internal)?,
                flash_id: flash(slot, 2)?,
                at: int(slot, 3)?,
                cancelled_at: None,
            },
            stock_left: count(slot, 4)?,
            flash_exhausted: flash(slot, 5)?,
        })),
        DUPLICATE => {
            let Some(Value::BulkString(text)) = slot.get(1) else {
                return Err(internal("claims reply: a duplicate without its record"));
            };
            Ok(ClaimDecision::Duplicate(ClaimAccepted {
                record: record(req.claim_id, text)?,
                stock_left: count(slot, 2)?,
                flash_exhausted: None,
            }))
        }
        REFUSED => {
            let code = int(slot, 1)?;
            let reason = usize::try_from(code - 1)
                .ok()
                .and_then(|i| REASONS.get(i).copied())
                .ok_or_else(|| internal(format!("claims reply: refusal code {code}")))?;
            let detail = int(slot, 2)?;
            let as_count = || u32::try_from(detail).ok();
            Ok(ClaimDecision::Refused(Refusal {
                reason,
                available: (reason == RefusalReason::SoldOut).then(as_count).flatten(),
                limit_left: (reason == RefusalReason::LimitExceeded)
                    .then(as_count)
                    .flatten(),
                current_price: (reason == RefusalReason::StalePrice)
                    .then(|| Dong::parse(detail).ok())
                    .flatten(),
            }))
        }
        EXPIRED => Err(InventoryError::DeadlinePassed),
        other => Err(internal(format!("claims reply: outcome code {other}"))),
    }
}

/// A claim record as `claims` keeps it: `buyer|product|quantity|unit_price|flash_id|at|cancelled_at`.
fn record(claim_id: ClaimId, text: &[u8]) -> Result<ClaimRecord> {
    let bad = || internal(format!("claim record {:?}", String::from_utf8_lossy(text)));
    let text = std::str::from_utf8(text).map_err(|_| bad())?;
    let mut fields = text.split('|');
    let mut next = || fields.next().ok_or_else(bad);
    let (buyer, product, quantity, price, flash_id, at, cancelled) = (
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
        next()?,
    );
    let number = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let optional = |s: &str| (!s.is_empty()).then(|| number(s)).transpose();
    Ok(ClaimRecord {
        claim_id,
        buyer: BuyerId::parse(buyer).map_err(internal)?,
        product_id: ProductId::parse(product).map_err(internal)?,
        quantity: quantity.parse().map_err(|_| bad())?,
        unit_price: Dong::parse(number(price)?).map_err(internal)?,
        flash_id: flash_id.parse().ok(),
        at: number(at)?,
        cancelled_at: optional(cancelled)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_record_reads_back() {
        let id = ClaimId::parse("c1").unwrap();
        let r = record(id.clone(), b"b1|p1|2|90000|3|1700|1800").unwrap();
        assert_eq!(
            (r.buyer.as_str(), r.product_id.as_str(), r.quantity),
            ("b1", "p1", 2)
        );
        assert_eq!(
            (r.unit_price.get(), r.flash_id, r.at, r.cancelled_at),
            (90_000, Some(3), 1700, Some(1800))
        );
        let r = record(id.clone(), b"b1|p1|2|90000||1700|").unwrap();
        assert_eq!((r.flash_id, r.cancelled_at), (None, None));
        assert!(record(id, b"b1|p1|2").is_err());
    }

    /// The codes here are the codes of `claims.lua`: outcomes 1 to 4, and refusal `i` is
    /// `REASONS[i - 1]`, named there as the reason's wire name in capitals.
    #[test]
    fn the_script_numbers_outcomes_and_refusals_as_this_file_does() {
        let script = include_str!("claims.lua");
        assert!(script.contains("local ACCEPTED, DUPLICATE, REFUSED, EXPIRED = 1, 2, 3, 4"));
        let start = script.find("local SHOW_NOT_LIVE").unwrap();
        let (names, codes) = script[start + "local ".len()..].split_once('=').unwrap();
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        let codes: Vec<&str> = codes
            .lines()
            .next()
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        let expected: Vec<String> = REASONS
            .iter()
            .map(|r| {
                serde_json::to_string(r)
                    .unwrap()
                    .trim_matches('"')
                    .to_uppercase()
            })
            .collect();
        assert_eq!(names, expected);
        let numbered: Vec<String> = (1..=REASONS.len()).map(|i| i.to_string()).collect();
        assert_eq!(codes, numbered);
    }
}
