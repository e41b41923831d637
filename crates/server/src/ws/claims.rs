//! A claim from the moment a session reads it to its definite answer, within the claim deadline.
//!
//! The deadline (`limits.claim_deadline_ms` after the claim was read) travels into the
//! inventory, which refuses a claim that executes after it (in Redis: the script compares it with
//! `TIME`). So once it has passed, a claim that has not executed never will, and:
//!
//! - a claim the inventory decided in time gets that answer;
//! - a claim that surely never reached the inventory (refused connection, dependency known to be
//!   down) is answered `unavailable`, retryable;
//! - a claim that may have reached it (a call still in flight at the deadline, a reply lost) is
//!   answered `pending` at the deadline, then sent again with the same id and deadline until the
//!   inventory answers: `duplicate` means it did execute (answered `accepted`), a deadline
//!   refusal that it never will (answered `unavailable`). That real answer goes to the same
//!   connection; had the viewer left, the next snapshot's `my_claims` shows it.
//!
//! The deadline is on the clock the inventory decides by ([`Inventory::clock`]): the server's
//! clock with the embedded inventory, so a test's manual clock passes it exactly when the test
//! moves the clock; the system clock with Redis. Node and Redis clocks are assumed to agree
//! within NTP's tens of milliseconds: a skew shifts the deadline the script enforces by as
//! much, and a claim resent after the deadline is simply decided again under it (the answer is
//! still the truth).
//!
//! [`Inventory::clock`]: nightmarket_inventory::Inventory::clock

use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::{ClaimDecision, ClaimRequest};
use nightmarket_inventory::{Claim, InventoryError};
use nightmarket_wire::ErrorCode;
use nightmarket_wire::server::{ClaimOutcomeKind, ClaimResult, ServerMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::clock::sleep_until;
use crate::convert;
use crate::live::ShowRuntime;
use crate::metrics::inc;
use crate::state::AppState;

/// First pause before sending a claim again after a failure; doubles up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(25);
/// Longest pause between two attempts to learn a pending claim's outcome.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs one claim to its answer(s), sending them to `out` (the session's answer queue). Returns
/// early if the session is gone.
pub async fn decide(
    state: Arc<AppState>,
    rt: Arc<ShowRuntime>,
    req: ClaimRequest,
    out: mpsc::Sender<ServerMessage>,
) {
    let received = Instant::now();
    let deadline_ms = state.config().limits.claim_deadline_ms;
    // The inventory refuses a claim it executes after `deadline`; the task gives up once the
    // same clock reads past it, so `pending` goes out only when no attempt can execute any
    // more: no claim executes after its viewer was told `pending`.
    let clock = state.inventory().clock().clone();
    let deadline = clock.now().saturating_add_unsigned(deadline_ms);
    let passed = || sleep_until(clock.clone(), deadline.saturating_add(1));
    let claim_id = req.claim_id.to_string();
    let send = |r: ClaimResult| {
        let out = out.clone();
        async move { out.send(ServerMessage::ClaimResult(r)).await.is_ok() }
    };
    // The first answer (definite or `pending`) is what the viewer waits for: its latency is
    // recorded once per claim; a later answer to a pending claim is not.
    let first = |r: ClaimResult| {
        state.metrics().claim_answer.record(received.elapsed());
        send(r)
    };
    // A dependency known to be down (the health prober's last word) is not waited for.
    if let Err(e) = state.inventory().health() {
        let r = unavailable(&state, &rt, &claim_id, &e);
        first(r).await;
        return;
    }

    // Attempts until an answer, or until the deadline with a call still out.
    let mut maybe_sent = false;
    let mut pause = RETRY_MIN;
    let late = loop {
        let mut call = state.inventory().claim_within(
            &rt.id,
            Claim {
                req: req.clone(),
                now: clock.now(),
                deadline: Some(deadline),
            },
        );
        let answer = tokio::select! {
            r = &mut call => Some(r),
            () = passed() => None,
        };
        let Some(answer) = answer else {
            break Some(call);
        };
        match answer {
            Err(e @ (InventoryError::Unavailable(_) | InventoryError::Unknown(_))) => {
                maybe_sent |= matches!(e, InventoryError::Unknown(_));
                if clock
                    .now()
                    .saturating_add_unsigned(pause.as_millis() as u64)
                    > deadline
                {
                    if !maybe_sent {
                        let r = unavailable(&state, &rt, &claim_id, &e);
                        first(r).await;
                        return;
                    }
                    break None;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
            other => {
                first(answer_of(&state, &rt, &claim_id, other, maybe_sent)).await;
                return;
            }
        }
    };

    // The outcome is not known by the deadline: say so, then find out.
    inc(&state.metrics().claims_pending);
    if !first(convert::claim_pending(&claim_id, deadline_ms)).await {
        return;
    }
    if let Some(call) = late {
        match call.await {
            Err(InventoryError::Unavailable(_) | InventoryError::Unknown(_)) => {}
            other => {
                send(answer_of(&state, &rt, &claim_id, other, true)).await;
                return;
            }
        }
    }
    let mut pause = RETRY_MIN;
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
        match state
            .inventory()
            .claim_within(
                &rt.id,
                Claim {
                    req: req.clone(),
                    now: clock.now(),
                    deadline: Some(deadline),
                },
            )
            .await
        {
            Err(InventoryError::Unavailable(_) | InventoryError::Unknown(_)) => {}
            other => {
                send(answer_of(&state, &rt, &claim_id, other, true)).await;
                return;
            }
        }
    }
}

/// The answer to a decided (or definitely undecided) claim, counted in the metrics and the
/// show's statistics. `resolved`: an earlier attempt of this claim may have executed, so a
/// `duplicate` is this very claim's acceptance.
fn answer_of(
    state: &Arc<AppState>,
    rt: &Arc<ShowRuntime>,
    claim_id: &str,
    decided: Result<ClaimDecision, InventoryError>,
    resolved: bool,
) -> ClaimResult {
    match decided {
        Ok(ClaimDecision::Accepted(a)) => {
            inc(&state.metrics().claims_accepted);
            if let Some(flash_id) = a.flash_exhausted {
                state.live().end_capped_flash(rt.clone(), flash_id);
            }
            convert::claim_accepted(&a, ClaimOutcomeKind::Accepted)
        }
        Ok(ClaimDecision::Duplicate(a)) if resolved => {
            inc(&state.metrics().claims_accepted);
            convert::claim_accepted(&a, ClaimOutcomeKind::Accepted)
        }
        Ok(ClaimDecision::Duplicate(a)) => {
            inc(&state.metrics().claims_duplicate);
            convert::claim_accepted(&a, ClaimOutcomeKind::Duplicate)
        }
        Ok(ClaimDecision::Refused(r)) => {
            refused(state, rt, convert::refusal_code(r.reason));
            convert::claim_refused(claim_id, &r)
        }
        Err(InventoryError::DeadlinePassed) => {
            refused(state, rt, ErrorCode::Unavailable);
            convert::claim_error(
                claim_id,
                ErrorCode::Unavailable,
                format!(
                    "not decided within {} ms; it was not taken and never will be; retry with \
                     the same claim_id",
                    state.config().limits.claim_deadline_ms
                ),
            )
        }
        Err(e) => {
            let (code, message) = inventory_error(e);
            refused(state, rt, code);
            convert::claim_error(claim_id, code, message)
        }
    }
}

/// The answer to a claim the inventory could not take: the driver's words (hosts, ports, OS
/// errors) go to the log, the viewer gets the code and a fixed sentence.
fn unavailable(
    state: &AppState,
    rt: &ShowRuntime,
    claim_id: &str,
    why: &InventoryError,
) -> ClaimResult {
    tracing::warn!(show = %rt.id, claim_id, error = %why, "claim refused: inventory unavailable");
    refused(state, rt, ErrorCode::Unavailable);
    convert::claim_error(
        claim_id,
        ErrorCode::Unavailable,
        "the inventory is unavailable; retry with the same claim_id",
    )
}

fn refused(state: &AppState, rt: &ShowRuntime, code: ErrorCode) {
    state.metrics().refused(code);
    rt.stats.refused(code);
}

/// The code and words an inventory failure is answered with: the HTTP mapping, so backend
/// details stay in the log on both transports.
pub(crate) fn inventory_error(e: InventoryError) -> (ErrorCode, String) {
    let e = crate::services::ServiceError::from(e);
    (e.code, e.message)
}
