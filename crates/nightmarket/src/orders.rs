//! `nightmarket orders` (the order service on its own) and `nightmarket settle` (one show by
//! hand).

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use nightmarket_domain::ShowId;
use nightmarket_orders::{SettleError, Standing};
use nightmarket_server::config::Config;
use nightmarket_server::jobs::order_service;
use nightmarket_server::open_backends;

/// Exit status when the claim log does not reconcile.
pub const EXIT_MISMATCH: u8 = 3;
/// Exit status when the show has not closed, or its close is not recorded yet.
pub const EXIT_NOT_CLOSED: u8 = 4;

fn actor() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("order-service@{host}:{}", std::process::id())
}

/// Runs the order service until `shutdown` resolves. Apart from `serve` it needs the shared
/// backends: an embedded inventory lives inside the serving process.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> ExitCode {
    if config.redis_url.is_empty() || config.database_url.is_empty() {
        eprintln!(
            "nightmarket orders: the order service runs on its own only in distributed mode \
             (set redis_url and database_url); with the embedded defaults `nightmarket serve` \
             runs it (orders.in_serve)"
        );
        return ExitCode::from(2);
    }
    let backends = match open_backends(&config, nightmarket_server::clock::system()).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("nightmarket orders: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settler = Arc::new(order_service::settler(
        &config,
        backends.catalog.clone(),
        backends.inventory.clone(),
        backends.clock.clone(),
        &actor(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(settler.run(stop_rx));
    tracing::info!("order service running");
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = task.await;
    tracing::info!("order service stopped");
    ExitCode::SUCCESS
}

/// Settles (or inspects) one show and prints the outcome as JSON on stdout.
pub async fn settle(config: Config, show: String, dry_run: bool) -> ExitCode {
    let show = match ShowId::parse(show) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nightmarket settle: show id: {e}");
            return ExitCode::from(2);
        }
    };
    // Settling reads what `serve` wrote: a data directory without a store is a mistyped
    // NIGHTMARKET_DATA_DIR, not an empty market (opening it would create one).
    let store_file = config.data_dir.join("catalog.sqlite");
    if config.database_url.is_empty() && !store_file.exists() {
        eprintln!(
            "nightmarket settle: no store at {}: point NIGHTMARKET_DATA_DIR (or data_dir) at the \
             directory `serve` uses, or set NIGHTMARKET_DATABASE_URL",
            store_file.display()
        );
        return ExitCode::from(2);
    }
    let backends = match open_backends(&config, nightmarket_server::clock::system()).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("nightmarket settle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settler = order_service::settler(
        &config,
        backends.catalog.clone(),
        backends.inventory.clone(),
        backends.clock.clone(),
        &format!("operator:{}", actor()),
    );
    // Recording what is left of the claim log is timed apart from reconciling and writing the
    // orders: in `serve` the order service records while the show is live, so after the close
    // mostly the second part remains. Only a show the store knows is recorded here, so an
    // unknown id is reported as such by `settle`.
    let started = Instant::now();
    let mut recorded_now = 0;
    if !dry_run && matches!(backends.catalog.show(&show).await, Ok(Some(_))) {
        match settler.record(&show, usize::MAX).await {
            Ok(r) => recorded_now = r.entries,
            Err(e) => return failed(&show, e),
        }
    }
    let record_ms = started.elapsed().as_secs_f64() * 1e3;
    let settling = Instant::now();
    match settler.settle(&show, dry_run).await {
        Ok(standing) => {
            let (mut out, code) = describe(&show, &standing);
            let settle_ms = settling.elapsed().as_secs_f64() * 1e3;
            out["recorded_now"] = recorded_now.into();
            out["timing_ms"] = serde_json::json!({
                "record": record_ms, "settle": settle_ms, "total": record_ms + settle_ms,
            });
            println!("{out}");
            code
        }
        Err(e) => failed(&show, e),
    }
}

/// Prints a failed settlement as JSON and picks the exit status.
fn failed(show: &ShowId, e: SettleError) -> ExitCode {
    let out = serde_json::json!({
        "show_id": show,
        "outcome": "error",
        "code": e.code(),
        "message": e.to_string(),
    });
    println!("{out}");
    match e {
        SettleError::UnknownShow(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

fn describe(show: &ShowId, standing: &Standing) -> (serde_json::Value, ExitCode) {
    use serde_json::json;
    match standing {
        Standing::Recording { recorded_to } => (
            json!({"show_id": show, "outcome": "not_closed", "recorded_to": recorded_to}),
            ExitCode::from(EXIT_NOT_CLOSED),
        ),
        Standing::Mismatch(report) => (
            json!({"show_id": show, "outcome": "mismatch", "report": report}),
            ExitCode::from(EXIT_MISMATCH),
        ),
        Standing::WouldSettle(report) => (
            json!({
                "show_id": show,
                "outcome": if report.balanced { "would_settle" } else { "mismatch" },
                "report": report,
            }),
            if report.balanced {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_MISMATCH)
            },
        ),
        Standing::Settled { row, report, now } => (
            json!({
                "show_id": show,
                "outcome": if *now { "settled" } else { "already_settled" },
                "orders": row.orders,
                "units": row.units,
                "revenue": row.revenue,
                "claims": row.claims,
                "cancels": row.cancels,
                "settled_by": row.decided_by,
                "settled_at": row.decided_at,
                "report": report,
            }),
            ExitCode::SUCCESS,
        ),
    }
}
