//! The `nightmarket` command line: `serve`, `demo`, `orders`, `settle`, `invite` and `token`. `main.rs` only calls [`main`];
//! the end-to-end tests start that binary as a child process.

pub mod demo;
pub mod orders;
pub mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use nightmarket_server::auth::Role;
use nightmarket_server::config::{Config, DEV_SECRET};
use nightmarket_server::services::sessions;

#[derive(Parser)]
#[command(
    name = "nightmarket",
    version,
    about = "Livestream market nights: live shows, flash prices, one-tap claims."
)]
struct Cli {
    /// Configuration file layered over the built-in defaults (also NIGHTMARKET_CONFIG).
    #[arg(long, global = true, env = "NIGHTMARKET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the market: HTTP API, WebSocket shows, embedded store.
    Serve,
    /// Run the market with a demo: OCOP sellers and products, and a live show that moves.
    Demo {
        /// Simulated buyers claiming in the demo show.
        #[arg(long, default_value_t = 12)]
        buyers: u32,
    },
    /// Run only the order service (distributed mode: shared Redis and PostgreSQL): record every
    /// show's claim log and settle closed shows into orders. Any number may run.
    Orders,
    /// Settle one closed show by hand, or with --dry-run report what settling would find.
    /// Exit status: 0 settled (now or before), 3 the claim log does not reconcile, 4 the show
    /// has not closed (or its close is not recorded yet), 1 an error.
    Settle {
        show_id: String,
        /// Reconcile and report without writing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a one-time sign-in link for the consoles: the first operator is invited this way,
    /// and operators invite sellers from their console. Stored in the store `serve` uses.
    Invite {
        #[arg(long, value_enum)]
        role: InviteRole,
        /// A name for operators (letters, digits, '-', '_', '.'); the seller id for sellers.
        #[arg(long)]
        subject: String,
        /// The address people open (default: `public_url`, else http://<listen>).
        #[arg(long)]
        base_url: Option<String>,
    },
    /// Print a signed token for development.
    Token {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Seller id for sellers, buyer id for viewers, any name for operators.
        #[arg(long)]
        subject: String,
        /// Hours until the token expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum InviteRole {
    Operator,
    Seller,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Operator,
    Seller,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Operator => Role::Operator,
            RoleArg::Seller => Role::Seller,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTMARKET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: in a file or a log collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if std::env::var("NIGHTMARKET_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `nightmarket invite`: stores a one-time sign-in link and prints it.
async fn invite(
    config: Config,
    role: &'static str,
    subject: String,
    base_url: Option<String>,
) -> ExitCode {
    let store = match nightmarket_server::open_store(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nightmarket: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = token::now_secs() * 1000;
    match sessions::issue_invite(&store, &config.sessions, role, &subject, "cli", now).await {
        Ok((code, row)) => {
            let base = base_url
                .or_else(|| (!config.public_url.is_empty()).then(|| config.public_url.clone()))
                .unwrap_or_else(|| format!("http://{}", config.listen));
            println!(
                "{}",
                sessions::invite_url(base.trim_end_matches('/'), &code)
            );
            let expires = jiff::Timestamp::from_millisecond(row.expires_at)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let stored = if config.database_url.is_empty() {
                config.data_dir.join("catalog.sqlite").display().to_string()
            } else {
                "the PostgreSQL store".into()
            };
            eprintln!(
                "one-time sign-in link for {role} {subject}: usable once, until {expires}; stored in {stored}"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nightmarket: {}: {}", e.code, e.message);
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// Runs `f` on a fresh multi-threaded runtime and returns its exit code.
fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r.block_on(f),
        Err(e) => {
            eprintln!("nightmarket: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nightmarket: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Cmd::Token {
        role,
        subject,
        ttl_hours,
    } = &cli.command
    {
        if *ttl_hours <= 0 {
            eprintln!("nightmarket: --ttl-hours must be at least 1");
            return ExitCode::from(2);
        }
        println!(
            "{}",
            token::mint(
                &config,
                (*role).into(),
                subject,
                ttl_hours.saturating_mul(3600)
            )
        );
        return ExitCode::SUCCESS;
    }
    init_tracing();
    match &cli.command {
        Cmd::Orders => return block_on(orders::run(config, shutdown_signal())),
        Cmd::Settle { show_id, dry_run } => {
            return block_on(orders::settle(config, show_id.clone(), *dry_run));
        }
        Cmd::Invite {
            role,
            subject,
            base_url,
        } => {
            let role = match role {
                InviteRole::Operator => "operator",
                InviteRole::Seller => "seller",
            };
            return block_on(invite(config, role, subject.clone(), base_url.clone()));
        }
        _ => {}
    }
    if config.auth_secret.expose() == DEV_SECRET {
        tracing::warn!(
            "using the development auth secret; set NIGHTMARKET_AUTH_SECRET and dev = false in production"
        );
    }
    if !config.redis_url.is_empty() && config.database_url.is_empty() {
        // Redis is shared, the SQLite store is not: say at once what that means, rather than
        // let a show made on one machine be unknown on another.
        tracing::warn!(
            store = %config.data_dir.join("catalog.sqlite").display(),
            "distributed mode with the embedded SQLite store: shows, claims and events are shared \
             through Redis, but sellers, products, markets and shows are known only to nodes on \
             this machine that use this same data_dir; nodes on other machines must set \
             NIGHTMARKET_DATABASE_URL to one PostgreSQL"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nightmarket: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = nightmarket_server::bind(&config)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let local = listener.local_addr()?;
        // Every dependency is reached before the server says it listens: a store or Redis it
        // cannot use ends the start here, named.
        let backends =
            nightmarket_server::open_backends(&config, nightmarket_server::clock::system()).await?;
        // One line on stdout that scripts and tests wait for.
        println!("nightmarket listening on {local}");
        match cli.command {
            Cmd::Serve => {
                nightmarket_server::serve_with(listener, config, backends, shutdown_signal())
                    .await?;
            }
            Cmd::Demo { buyers } => {
                demo::run(listener, config, backends, buyers, shutdown_signal()).await?;
            }
            Cmd::Token { .. } | Cmd::Orders | Cmd::Settle { .. } | Cmd::Invite { .. } => {}
        }
        Ok::<(), anyhow::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nightmarket: {e:#}");
            ExitCode::FAILURE
        }
    }
}
