//! Redis test support shared by the inventory's own tests and the workspace's end-to-end tests:
//! where the test Redis (and Redis Cluster) that `scripts/test` provides live, and a
//! redis-server of a test's own, which the test may hang, kill and start again without
//! touching the shared one.
//!
//! Compiled only with the `testing` feature, like the conformance suite.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared test Redis: `NIGHTMARKET_TEST_REDIS_URL`, which `scripts/test` sets.
pub fn redis_url() -> String {
    std::env::var("NIGHTMARKET_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("NIGHTMARKET_TEST_REDIS_URL is not set: run the tests with scripts/test, which starts a Redis")
    })
}

/// The seed URLs of the shared test Redis Cluster: `NIGHTMARKET_TEST_REDIS_CLUSTER_URLS`
/// (comma-separated), which `scripts/test` sets.
pub fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("NIGHTMARKET_TEST_REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        panic!("NIGHTMARKET_TEST_REDIS_CLUSTER_URLS is not set: run the tests with scripts/test, which starts a Redis Cluster")
    });
    urls.split(',').map(|u| u.trim().to_owned()).collect()
}

/// How long a redis-server of a test's own may take to accept connections.
const START_WITHIN: Duration = Duration::from_secs(5);

/// A redis-server of the test's own on a port of its own, without snapshots, its files in a
/// temporary directory (so it can be given a replica, stopped, or killed and started again
/// with its append-only file). `NIGHTMARKET_TEST_REDIS_SERVER` names the binary.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
    /// Kept for a restart ([`OwnRedis::kill`]); `None` once handed back.
    dir: Option<tempfile::TempDir>,
    /// Reaped: its pid may belong to someone else now, so it is never signalled again.
    stopped: bool,
}

impl OwnRedis {
    /// Starts a server on a free port; `extra` are more `redis-server` arguments.
    pub fn start(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::start_at(port, dir, extra)
    }

    /// Starts (or, after [`OwnRedis::kill`], restarts) a server on `port` whose files live in
    /// `dir`.
    pub fn start_at(port: u16, dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let bin = std::env::var("NIGHTMARKET_TEST_REDIS_SERVER")
            .unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test says how)");
        // Owned at once, so the server is reaped (Drop) on every path, a failed start included.
        let me = Self {
            port,
            child,
            dir: Some(dir),
            stopped: false,
        };
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return me;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on {port} did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: the server hangs with its sockets open, as under a stall or a partition that
    /// drops nothing; requests queue unanswered in its socket buffers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the server runs what queued meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} of our own redis-server");
    }

    /// SIGKILL; returns the port and the data directory for [`OwnRedis::start_at`].
    pub fn kill(mut self) -> (u16, tempfile::TempDir) {
        self.stop();
        let dir = self.dir.take().expect("the directory is handed back once");
        (self.port, dir)
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        // A paused server must run again to die of SIGKILL promptly and free its port.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stopped = true;
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The whole conformance suite, then again after Redis has lost its script cache (`SCRIPT
/// FLUSH` through `conn`, as a restart loses it; on a Cluster it reaches every master): EVALSHA
/// must fall back to loading each script again.
pub async fn run_across_a_script_flush(
    inv: std::sync::Arc<dyn crate::Inventory>,
    conn: &mut impl redis::aio::ConnectionLike,
) -> Result<(), String> {
    crate::conformance::run(inv.clone(), "before").await?;
    let flushed: redis::RedisResult<()> = redis::cmd("SCRIPT").arg("FLUSH").query_async(conn).await;
    flushed.map_err(|e| format!("SCRIPT FLUSH: {e}"))?;
    crate::conformance::run(inv, "after").await
}
