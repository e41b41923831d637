//! What io_uring would save the fan-out: the same frame sent to many loopback sockets, once
//! with one `send` system call per socket (what a shard's walk does) and once with each chunk
//! of sockets' sends in one io_uring submission, alternating, with the sending thread's user
//! and system CPU per send from `/proc/thread-self/stat`.
//!
//! `cargo run --release --manifest-path tools/uring-sends/Cargo.toml -- [sockets] [events]
//! [runs]` (defaults 2000, 100, 5). Run it pinned, e.g. `taskset -c 0,1`: the sender takes the first
//! CPU of its set and the reader, which drains every socket in a loop, the last. It is a
//! measuring tool, not a test: nothing here asserts. docs/architecture.md has its results.

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("io_uring is Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// The benchmark's event frame size (header included).
    const FRAME: usize = 130;
    /// Sends per submission, as a shard walks `WALK_CHUNK` viewers before yielding.
    const CHUNK: usize = 256;
    /// Pause between events, so each finds the reader caught up, as in the benchmark.
    const PAUSE: Duration = Duration::from_millis(5);

    /// This thread's (user, system) CPU seconds.
    fn thread_cpu() -> (f64, f64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / hz;
        (tick(11), tick(12))
    }

    fn pin_to(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is a valid empty set, and the call only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    fn allowed_cpus() -> Vec<usize> {
        // SAFETY: as above; the set is filled by the kernel.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Write,
        Uring,
    }

    /// CPU microseconds per send (user, system) for one run of `events` events.
    fn run(
        servers: &mut [TcpStream],
        ring: &mut io_uring::IoUring,
        mode: Mode,
        events: usize,
    ) -> (f64, f64, u64) {
        let frame = [b'x'; FRAME];
        let mut failed = 0u64;
        let (u0, s0) = thread_cpu();
        for _ in 0..events {
            match mode {
                Mode::Write => {
                    for s in servers.iter_mut() {
                        if s.write(&frame).is_err() {
                            failed += 1;
                        }
                    }
                }
                Mode::Uring => {
                    for chunk in servers.chunks(CHUNK) {
                        {
                            let mut sq = ring.submission();
                            for s in chunk {
                                // MSG_DONTWAIT: a full socket completes with EAGAIN at once,
                                // as a non-blocking write would, instead of being polled.
                                let send = io_uring::opcode::Send::new(
                                    io_uring::types::Fd(s.as_raw_fd()),
                                    frame.as_ptr(),
                                    FRAME as u32,
                                )
                                .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                                .build();
                                // SAFETY: `frame` outlives the submission, which is waited
                                // for below, and the queue has room for a whole chunk.
                                if unsafe { sq.push(&send) }.is_err() {
                                    failed += 1;
                                }
                            }
                        }
                        if ring.submit_and_wait(chunk.len()).is_err() {
                            failed += chunk.len() as u64;
                        }
                        failed += ring.completion().filter(|c| c.result() < 0).count() as u64;
                    }
                }
            }
            std::thread::sleep(PAUSE);
        }
        let (u1, s1) = thread_cpu();
        let sends = (events * servers.len()) as f64;
        ((u1 - u0) * 1e6 / sends, (s1 - s0) * 1e6 / sends, failed)
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    pub fn main() {
        let arg = |i: usize, d: usize| {
            std::env::args()
                .nth(i)
                .and_then(|a| a.parse().ok())
                .unwrap_or(d)
        };
        let (n, events, runs) = (arg(1, 2000), arg(2, 100), arg(3, 5).max(1));
        let cpus = allowed_cpus();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut clients = Vec::with_capacity(n);
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            let client = TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            server.set_nodelay(true).expect("nodelay");
            server.set_nonblocking(true).expect("nonblocking");
            client.set_nonblocking(true).expect("nonblocking");
            clients.push(client);
            servers.push(server);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            let cpu = cpus.last().copied();
            std::thread::spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    for c in &mut clients {
                        let _ = c.read(&mut buf);
                    }
                }
            })
        };
        if let Some(&cpu) = cpus.first() {
            pin_to(cpu);
        }
        let mut ring = io_uring::IoUring::new(CHUNK as u32).expect("io_uring_setup");
        let mut totals = [Vec::new(), Vec::new()];
        for r in 0..runs {
            for (i, mode) in [Mode::Write, Mode::Uring].into_iter().enumerate() {
                let (user, sys, failed) = run(&mut servers, &mut ring, mode, events);
                let name = if mode == Mode::Write {
                    "write"
                } else {
                    "io_uring"
                };
                println!(
                    "run {r} {name:8} user {user:.3} + system {sys:.3} = {:.3} µs per send ({failed} failed)",
                    user + sys
                );
                totals[i].push(user + sys);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = reader.join();
        let (w, u) = (median(&mut totals[0]), median(&mut totals[1]));
        println!(
            "{n} sockets × {events} events, {runs} runs: median {w:.3} µs per send with write, {u:.3} with io_uring ({:.2}×)",
            u / w
        );
    }
}
