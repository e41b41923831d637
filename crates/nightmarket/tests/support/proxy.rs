//! A TCP proxy the test controls, put between one process and a dependency (Redis,
//! PostgreSQL) to partition them without touching the dependency itself: the other nodes keep
//! talking to it directly.
//!
//! Five modes, switched at any time and applied to every connection at once:
//!
//! - [`Fault::Pass`]: bytes flow both ways as they arrive.
//! - [`Fault::Delay`]: each chunk read waits this long before it is written on (latency added
//!   per chunk, per direction; order kept).
//! - [`Fault::Cut`]: every connection is reset (RST, as a dead peer or a firewall would), and the
//!   listening socket is closed, so new connections are refused until the mode changes.
//! - [`Fault::BlackHole`]: connections stay open and new ones are accepted, but nothing is
//!   read or forwarded: requests and replies wait in the sockets' buffers, unseen, as packets do
//!   behind a silent partition. When the mode turns back to `Pass` (the partition heals), what
//!   waited is delivered, late, exactly as TCP retransmission delivers it.
//! - [`Fault::Stale`]: the far side has lost every connection open at that moment (a NAT or
//!   load balancer forgot the flows, a failover moved the address to another host that drops
//!   what it does not know): they stay open and silent for good, whatever the mode later;
//!   connections opened afterwards pass.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bytes read per chunk: a chunk is the unit of added latency.
const CHUNK: usize = 16 * 1024;
/// How long the proxy tries to listen on its port again after a cut before giving up.
const REBIND_FOR: Duration = Duration::from_secs(10);

/// The mode every connection follows: the fault, and which connections the far side lost.
#[derive(Debug, Clone, Copy)]
struct Mode {
    fault: Fault,
    /// Connections numbered below this were open at the last [`Fault::Stale`]: silent for good.
    stale_below: u64,
}

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Delay(Duration),
    Cut,
    BlackHole,
    Stale,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Pass => f.write_str("pass"),
            Fault::Delay(d) => write!(f, "delay {} ms", d.as_millis()),
            Fault::Cut => f.write_str("cut"),
            Fault::BlackHole => f.write_str("black-hole"),
            Fault::Stale => f.write_str("old connections lost"),
        }
    }
}

/// What the proxy saw, for the test's report.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    /// Connections accepted (and forwarded, or held).
    pub accepted: AtomicU64,
    /// Connections reset by a cut.
    pub reset: AtomicU64,
    /// Bytes forwarded, both directions.
    pub bytes: AtomicU64,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    pub counts: Arc<ProxyCounts>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`, in [`Fault::Pass`].
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode {
            fault: Fault::Pass,
            stale_below: 0,
        });
        let counts = Arc::new(ProxyCounts::default());
        let task = tokio::spawn(accept_loop(listener, addr, upstream, rx, counts.clone()));
        Self {
            addr,
            mode,
            counts,
            task,
        }
    }

    /// Switches every connection, existing and new, to `fault`.
    pub fn set(&self, fault: Fault) {
        let opened = self.counts.accepted.load(Ordering::SeqCst);
        self.mode.send_modify(|m| {
            m.fault = fault;
            if fault == Fault::Stale {
                m.stale_below = opened;
            }
        });
    }

    pub fn fault(&self) -> Fault {
        self.mode.borrow().fault
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Connections end with the mode channel: every pump sees it close.
        self.task.abort();
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counts: Arc<ProxyCounts>,
) {
    loop {
        if mode.borrow_and_update().fault == Fault::Cut {
            // Refused, not accepted and reset: the client's connect fails at once, as it does
            // when the far side is down.
            drop(listener);
            loop {
                if mode.changed().await.is_err() {
                    return;
                }
                if mode.borrow_and_update().fault != Fault::Cut {
                    break;
                }
            }
            listener = rebind(addr).await;
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let id = counts.accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(connection(id, client, upstream, mode.clone(), counts.clone()));
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Listens on `addr` again (the listener was closed by a cut). The port was ours a moment
/// ago; SO_REUSEADDR (tokio sets it) lets it be bound again despite connections in TIME_WAIT.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let until = tokio::time::Instant::now() + REBIND_FOR;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < until,
                    "proxy cannot listen on {addr} again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits while the mode holds traffic back; `Err` when the connection must end (cut, or the
/// proxy is gone).
async fn forwarding(id: u64, mode: &mut watch::Receiver<Mode>) -> Result<Fault, ()> {
    loop {
        let now = *mode.borrow_and_update();
        match now.fault {
            Fault::Cut => return Err(()),
            _ if id < now.stale_below => {}
            Fault::BlackHole => {}
            Fault::Stale => return Ok(Fault::Pass),
            other => return Ok(other),
        }
        if mode.changed().await.is_err() {
            return Err(());
        }
    }
}

async fn connection(
    id: u64,
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    counts: Arc<ProxyCounts>,
) {
    // A connection accepted during a black hole is held before it reaches the other side.
    if forwarding(id, &mut mode).await.is_err() {
        reset(&client);
        counts.reset.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client, mut server) = (client, server);
    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(id, client_read, server_write, mode.clone(), &counts);
        let down = pump(id, server_read, client_write, mode.clone(), &counts);
        // Either direction ending ends the connection: neither Redis nor PostgreSQL clients
        // half-close.
        tokio::select! {
            cut = up => cut,
            cut = down => cut,
        }
    };
    if cut {
        counts.reset.fetch_add(1, Ordering::Relaxed);
        reset(&client);
        reset(&server);
    }
}

/// Copies one direction until EOF, an error or a cut; returns whether it was a cut.
async fn pump(
    id: u64,
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut mode: watch::Receiver<Mode>,
    counts: &ProxyCounts,
) -> bool {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if forwarding(id, &mut mode).await.is_err() {
            return true;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            },
            // The mode changed while waiting for bytes: look at it again before reading.
            changed = mode.changed() => {
                if changed.is_err() {
                    return true;
                }
                continue;
            }
        };
        let fault = match forwarding(id, &mut mode).await {
            Ok(f) => f,
            Err(()) => return true,
        };
        if let Fault::Delay(d) = fault {
            tokio::time::sleep(d).await;
        }
        // A black hole that began during the delay holds the chunk too.
        if forwarding(id, &mut mode).await.is_err() {
            return true;
        }
        tokio::select! {
            w = to.write_all(&buf[..n]) => if w.is_err() {
                return false;
            },
            // A peer that stopped reading must not keep a cut connection alive.
            () = wait_cut(mode.clone()) => return true,
        }
        counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn wait_cut(mut mode: watch::Receiver<Mode>) {
    loop {
        if mode.borrow_and_update().fault == Fault::Cut {
            return;
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// Closing a socket with a zero linger sends RST: the peer learns at once, as from a dead host.
fn reset(s: &TcpStream) {
    let _ = s.set_zero_linger();
}
