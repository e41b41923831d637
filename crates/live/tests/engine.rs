//! The engine over real loopback sockets, with tokio-tungstenite clients: order per viewer under
//! sharding, catch-up of a slow viewer, the close of one that stops reading, private frames in
//! order, resume from history, conflated values.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::SinkExt;
use nightmarket_live::inbound::{Message as In, Reader};
use nightmarket_live::{
    AttachOptions, CatchUpCell, Cells, Channel, CloseReason, Engine, Frame, LiveConfig, Published,
    Start, StartError, StartFrom, Viewer,
};
use support::{Client, next, next_text, until};
use tokio_tungstenite::tungstenite::Message;

fn config() -> LiveConfig {
    LiveConfig {
        shards: 4,
        history: 64,
        ..LiveConfig::default()
    }
}

fn event(seq: u64) -> Frame {
    Frame::text(&format!("ev:{seq}"))
}

/// An event of about a kilobyte, so a few fill a small socket buffer.
fn big_event(seq: u64) -> Frame {
    Frame::text(&format!("ev:{seq}:{}", "x".repeat(1000)))
}

/// The number in a frame `kind:N[:...]`.
fn number(text: &str) -> u64 {
    text.split(':').nth(1).and_then(|n| n.parse().ok()).unwrap()
}

/// Attaches a server stream and starts it at the channel's newest event with a hello.
/// An engine of one shard skipping runs that have waited `skip_after`, with one show whose
/// catch-up frames the test sets.
fn one_shard_show(skip_after: Duration) -> (Engine, Channel, Arc<CatchUpCell>) {
    let catch_up = Arc::new(CatchUpCell::default());
    let engine = Engine::new(LiveConfig {
        shards: 1,
        skip_after,
        ..config()
    })
    .unwrap();
    let ch = engine.channel("show", 0, catch_up.clone());
    (engine, ch, catch_up)
}

fn attach(ch: &Channel, tcp: tokio::net::TcpStream) -> (Viewer, tokio::net::tcp::OwnedReadHalf) {
    let (read, write) = tcp.into_split();
    (support::start_at_newest(ch, write), read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_viewer_sees_every_event_in_order_across_shards() {
    const VIEWERS: usize = 120;
    const EVENTS: u64 = 300;
    let engine = Engine::new(config()).unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let mut viewers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..VIEWERS {
        let (tcp, mut client) = support::pair(&listener, addr, None, None).await;
        viewers.push(attach(&ch, tcp));
        assert_eq!(next_text(&mut client).await, "hello");
        readers.push(tokio::spawn(async move {
            for seq in 1..=EVENTS {
                assert_eq!(next_text(&mut client).await, format!("ev:{seq}"));
            }
        }));
    }
    assert_eq!(ch.viewer_count(), VIEWERS as u64);
    for seq in 1..=EVENTS {
        assert_eq!(
            ch.publish(seq, event(seq)),
            Published::Delivered { frames: 1 }
        );
        if seq % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for r in readers {
        r.await.unwrap();
    }
    // Each shard adds its count after its walk, so the last few may land just after the
    // clients read them; then the sum is exact: one per viewer per event, one more per viewer
    // for its hello.
    let deliveries = VIEWERS as u64 * EVENTS;
    until("every delivery counted", || async {
        engine.metrics().events_delivered >= deliveries
    })
    .await;
    let m = engine.metrics();
    assert_eq!(m.events_delivered, deliveries, "{m:?}");
    assert_eq!(m.frames_delivered, deliveries + VIEWERS as u64, "{m:?}");
    assert_eq!(m.catch_ups, 0);
    drop(viewers);
    until("viewers detached", || async { ch.viewer_count() == 0 }).await;
}

/// An idle viewer holds no buffer: the queue a burst builds while its socket is full goes once
/// the socket drains, and the reader's buffer goes as soon as a message is decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_lets_go_of_its_buffers_after_a_burst() {
    const EVENTS: u64 = 64;
    let engine = Engine::new(LiveConfig {
        shards: 2,
        stall_timeout: Duration::from_secs(60),
        ..LiveConfig::default()
    })
    .unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let (tcp, mut client) = support::pair(&listener, addr, Some(4096), Some(4096)).await;
    let (viewer, read) = attach(&ch, tcp);
    let mut reader = Reader::new(read, &[], 1 << 16);
    assert_eq!(viewer.queue_capacity(), 0, "the hello went out at once");
    assert_eq!(reader.buffer_capacity(), 0);

    // About 64 KiB while the client reads nothing: far more than both socket buffers hold.
    for seq in 1..=EVENTS {
        ch.publish(seq, big_event(seq));
    }
    until("a queue for the full socket", || async {
        viewer.queue_capacity() > 0
    })
    .await;
    assert_eq!(next_text(&mut client).await, "hello");
    for seq in 1..=EVENTS {
        assert_eq!(number(&next_text(&mut client).await), seq);
    }
    until("the queue freed", || async { viewer.queue_capacity() == 0 }).await;
    until("every delivery counted", || async {
        engine.metrics().events_delivered >= EVENTS
    })
    .await;
    let m = engine.metrics();
    assert_eq!(m.events_delivered, EVENTS, "{m:?}");
    assert!(m.frames_queued > 0, "{m:?}");

    // A client message of several kilobytes: read, then the buffer is gone.
    let text = "y".repeat(3000);
    client.send(Message::text(text.clone())).await.unwrap();
    match reader.next(&viewer).await.unwrap() {
        Some(In::Text(t)) => assert_eq!(t, text),
        other => panic!("expected the text message, got {other:?}"),
    }
    assert_eq!(reader.buffer_capacity(), 0);
}

/// A waker that only counts its clones (through its `Arc`).
struct Quiet;

impl std::task::Wake for Quiet {
    fn wake(self: Arc<Self>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_reader_replaces_the_read_waker_left_by_the_upgrade() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let engine = Engine::new(config()).unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let (tcp, _client) = support::pair(&listener, addr, None, None).await;
    // What hyper's connection task does after reading the upgrade request: it waits for more
    // through the socket's read-waker slot, then ends, its waker still stored there.
    let left = Arc::new(Quiet);
    let waker = Waker::from(left.clone());
    let ready = tcp.poll_read_ready(&mut Context::from_waker(&waker));
    assert!(ready.is_pending(), "the client sent nothing");
    drop(waker);
    assert_eq!(Arc::strong_count(&left), 2, "the socket holds the waker");

    let (viewer, read) = attach(&ch, tcp);
    let mut reader = Reader::new(read, &[], 1 << 16);
    let mut next = std::pin::pin!(reader.next(&viewer));
    let first = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "the client sent nothing");
    assert_eq!(
        Arc::strong_count(&left),
        1,
        "the reader's wait let go of the earlier waker (and the task it keeps)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_events_wait_for_the_gap_to_be_repaired() {
    let engine = Engine::new(config()).unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let (tcp, mut client) = support::pair(&listener, addr, None, None).await;
    let _viewer = attach(&ch, tcp);
    assert_eq!(next_text(&mut client).await, "hello");
    assert_eq!(ch.publish(3, event(3)), Published::Gap { expected: 1 });
    assert_eq!(ch.publish(1, event(1)), Published::Delivered { frames: 1 });
    assert_eq!(ch.publish(1, event(1)), Published::Duplicate);
    assert_eq!(ch.publish(2, event(2)), Published::Delivered { frames: 2 });
    for seq in 1..=3 {
        assert_eq!(next_text(&mut client).await, format!("ev:{seq}"));
    }
}

/// On one thread the shard cannot run while the test publishes, so it finds the whole burst in
/// its inbox: runs of events go out to each viewer in one `writev`, cut where a conflated value
/// or a private frame stands between them.
#[tokio::test]
async fn a_burst_reaches_each_viewer_in_order() {
    let engine = Engine::new(config()).unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let mut clients = Vec::new();
    let mut viewers = Vec::new();
    for _ in 0..6 {
        let (tcp, client) = support::pair(&listener, addr, None, None).await;
        viewers.push(attach(&ch, tcp));
        clients.push(client);
    }
    let mut expected = vec!["hello".to_owned()];
    for seq in 1..=40 {
        ch.publish(seq, event(seq));
        expected.push(format!("ev:{seq}"));
        if seq == 20 {
            ch.set_stock(Frame::text("stock:20"));
            expected.push("stock:20".to_owned());
        }
    }
    for client in &mut clients {
        for want in &expected {
            assert_eq!(&next_text(client).await, want);
        }
    }
}

/// A shard that finds a long run of one show's events waiting (the node fell behind the show as
/// a whole) sends each viewer the show's catch-up frame in its place, so a lagging viewer ends
/// with the newest state after one frame rather than after the backlog; a viewer with a frame of
/// its own among those events gets every event around it, in order. On one thread the shard
/// cannot run while the test publishes, so it finds the whole burst at once.
#[tokio::test]
async fn a_shard_behind_its_show_skips_to_the_newest_state() {
    const BURST: u64 = 40;
    const ANSWERED_AT: u64 = 10;
    // Behind by count alone here: the burst is published faster than any shard runs.
    let (engine, ch, catch_up) = one_shard_show(Duration::ZERO);
    let (listener, addr) = support::listener().await;
    let (tcp, mut lagging) = support::pair(&listener, addr, None, None).await;
    let (_lagging_viewer, _read) = attach(&ch, tcp);
    let (tcp, mut seller) = support::pair(&listener, addr, None, None).await;
    let (seller_viewer, _seller_read) = attach(&ch, tcp);
    for seq in 1..=BURST {
        ch.publish(seq, event(seq));
        catch_up.set(seq, Frame::text(&format!("cu:{seq}")));
        if seq == ANSWERED_AT {
            seller_viewer
                .send(Frame::text(&format!("p:{seq}")))
                .unwrap();
        }
    }
    assert_eq!(next_text(&mut lagging).await, "hello");
    assert_eq!(
        next_text(&mut lagging).await,
        format!("cu:{BURST}"),
        "one catch-up to the newest state instead of the {BURST} events"
    );
    let mut expected = vec!["hello".to_owned()];
    for seq in 1..=BURST {
        expected.push(format!("ev:{seq}"));
        if seq == ANSWERED_AT {
            expected.push(format!("p:{seq}"));
        }
    }
    for want in expected {
        assert_eq!(next_text(&mut seller).await, want);
    }
    // Once caught up, the lagging viewer goes on event by event from there.
    ch.publish(BURST + 1, event(BURST + 1));
    assert_eq!(next_text(&mut lagging).await, format!("ev:{}", BURST + 1));
    assert_eq!(next_text(&mut seller).await, format!("ev:{}", BURST + 1));
    let m = engine.metrics();
    assert_eq!(m.catch_ups, 1, "{m:?}");
    assert_eq!(m.closed_slow + m.closed_resync, 0, "{m:?}");
}

/// A run queued on a shard that is behind by count but not by time (a script publishing
/// faster than a shard runs, the shard a moment behind) goes out event by event: nothing is
/// skipped for a viewer reading along.
#[tokio::test]
async fn a_burst_that_has_not_waited_goes_out_event_by_event() {
    const BURST: u64 = 40;
    let (engine, ch, catch_up) = one_shard_show(Duration::from_secs(3600));
    let (listener, addr) = support::listener().await;
    let (tcp, mut reader) = support::pair(&listener, addr, None, None).await;
    let (_viewer, _read) = attach(&ch, tcp);
    for seq in 1..=BURST {
        ch.publish(seq, event(seq));
        catch_up.set(seq, Frame::text(&format!("cu:{seq}")));
    }
    assert_eq!(next_text(&mut reader).await, "hello");
    for seq in 1..=BURST {
        assert_eq!(next_text(&mut reader).await, format!("ev:{seq}"));
    }
    let m = engine.metrics();
    assert_eq!(m.catch_ups, 0, "{m:?}");
}

/// Reads a viewer's frames up to `last` and `privates` private frames, checking that sequence
/// numbers only move on by one (an event) or jump forward on a catch-up frame, and that each
/// private frame `p:K` comes after the viewer reached K. Returns the catch-ups and private
/// frames seen.
async fn read_checked(client: &mut Client, last: u64, privates: usize) -> (u64, Vec<u64>) {
    let wanted = privates;
    let mut at = 0;
    let mut catch_ups = 0;
    let mut privates = Vec::new();
    assert_eq!(next_text(client).await, "hello");
    while at < last || privates.len() < wanted {
        let text = next_text(client).await;
        let n = number(&text);
        match &text[..2] {
            "ev" => {
                assert_eq!(
                    n,
                    at + 1,
                    "an event after {at} without a catch-up: {text:.12}"
                );
                at = n;
            }
            "cu" => {
                assert!(n >= at, "a catch-up backwards, to {n} from {at}");
                at = n;
                catch_ups += 1;
            }
            "p:" => {
                assert!(n <= at, "private frame {n} overtook the events (at {at})");
                privates.push(n);
            }
            "st" => {}
            _ => panic!("unexpected frame {text:.20}"),
        }
    }
    (catch_ups, privates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_is_caught_up_and_stays_while_others_get_everything() {
    const FAST: usize = 3;
    const EVENTS: u64 = 600;
    let engine = Engine::new(LiveConfig {
        shards: 2,
        history: 1024,
        queue_frames: 8,
        // The fast viewers get every event even when their shard finds a burst waiting.
        skip_run: 0,
        stall_timeout: Duration::from_secs(60),
        ..LiveConfig::default()
    })
    .unwrap();
    let catch_up = Arc::new(CatchUpCell::default());
    let ch = engine.channel("show", 0, catch_up.clone());
    ch.set_stock(Frame::text("stock:0"));
    let (listener, addr) = support::listener().await;

    let (tcp, mut slow_client) = support::pair(&listener, addr, Some(4096), Some(4096)).await;
    let (slow, _slow_read) = attach(&ch, tcp);
    let mut fast = Vec::new();
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..FAST).map(|_| AtomicU64::new(0)).collect());
    for i in 0..FAST {
        let (tcp, mut client) = support::pair(&listener, addr, None, None).await;
        fast.push(attach(&ch, tcp));
        let progress = progress.clone();
        tokio::spawn(async move {
            assert_eq!(next_text(&mut client).await, "hello");
            let mut at = 0;
            while at < EVENTS {
                let text = next_text(&mut client).await;
                if text.starts_with("ev:") {
                    assert_eq!(number(&text), at + 1, "a fast viewer missed an event");
                    at += 1;
                    progress[i].store(at, Relaxed);
                } else {
                    assert!(text.starts_with("stock:"), "fast viewer got {text:.20}");
                }
            }
        });
    }

    // The slow client reads nothing until the engine has caught it up at least once.
    for seq in 1..=EVENTS {
        ch.publish(seq, big_event(seq));
        catch_up.set(seq, Frame::text(&format!("cu:{seq}")));
        if seq % 50 == 0 {
            slow.send(Frame::text(&format!("p:{seq}"))).unwrap();
            ch.set_stock(Frame::text(&format!("stock:{seq}")));
        }
        if seq % 20 == 0 {
            // Paced by the fast viewers, who must never fall behind themselves.
            let progress = progress.clone();
            until("the fast viewers", move || {
                let progress = progress.clone();
                async move { progress.iter().all(|p| p.load(Relaxed) >= seq) }
            })
            .await;
        }
    }
    assert!(engine.metrics().catch_ups >= 1, "{:?}", engine.metrics());
    let (catch_ups, privates) =
        read_checked(&mut slow_client, EVENTS, (EVENTS / 50) as usize).await;
    assert!(catch_ups >= 1);
    assert_eq!(
        privates,
        (1..=EVENTS / 50).map(|k| k * 50).collect::<Vec<_>>(),
        "every private frame, in order"
    );
    assert!(slow.is_open(), "caught up, not disconnected");
    assert_eq!(slow.seq(), EVENTS);
    let m = engine.metrics();
    assert_eq!(m.closed_slow + m.closed_resync, 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_is_closed_with_its_code() {
    let slow_close = CloseReason {
        code: 4001,
        reason: "write_timeout",
    };
    let engine = Engine::new(LiveConfig {
        shards: 2,
        queue_frames: 4,
        stall_timeout: Duration::from_millis(300),
        close_grace: Duration::from_secs(20),
        slow_close,
        ..LiveConfig::default()
    })
    .unwrap();
    let catch_up = Arc::new(CatchUpCell::default());
    let ch = engine.channel("show", 0, catch_up.clone());
    let (listener, addr) = support::listener().await;
    let (tcp, mut stuck_client) = support::pair(&listener, addr, Some(4096), Some(4096)).await;
    let (stuck, _stuck_read) = attach(&ch, tcp);
    let (tcp, mut fine_client) = support::pair(&listener, addr, None, None).await;
    let (_fine, _fine_read) = attach(&ch, tcp);
    let received = Arc::new(AtomicU64::new(0));
    let fine_reader = {
        let received = received.clone();
        tokio::spawn(async move {
            assert_eq!(next_text(&mut fine_client).await, "hello");
            loop {
                match next(&mut fine_client).await {
                    Some(Message::Text(t)) => {
                        let n = number(&t);
                        assert_eq!(n, received.load(Relaxed) + 1);
                        received.store(n, Relaxed);
                    }
                    other => return other,
                }
            }
        })
    };

    // Publish until the engine gives up on the stuck viewer (it never reads).
    let mut seq = 0;
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while engine.metrics().closed_slow == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never closed");
        seq += 1;
        ch.publish(seq, big_event(seq));
        catch_up.set(seq, Frame::text(&format!("cu:{seq}")));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(support::PATIENCE, stuck.closing())
        .await
        .unwrap();
    assert!(!stuck.is_open());
    assert!(stuck.send(Frame::text("too late")).is_err());

    // Now it reads: what was in flight, then the close frame with the engine's code.
    let close = loop {
        match next(&mut stuck_client).await {
            Some(Message::Text(_)) => continue,
            Some(Message::Close(close)) => break close,
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(u16::from(close.code), slow_close.code);
    assert_eq!(close.reason.as_str(), slow_close.reason);

    // The other viewer was not held up.
    until("the other viewer", || {
        let received = received.clone();
        async move { received.load(Relaxed) == seq }
    })
    .await;
    fine_reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_frames_keep_their_place_among_events() {
    let engine = Engine::new(config()).unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    let (listener, addr) = support::listener().await;
    let (tcp, mut client) = support::pair(&listener, addr, None, None).await;
    let (viewer, _read) = attach(&ch, tcp);
    let mut expected = vec!["hello".to_owned()];
    for seq in 1..=300 {
        ch.publish(seq, event(seq));
        expected.push(format!("ev:{seq}"));
        if seq % 3 == 0 {
            // Sent after the event was published: it follows that event and precedes the next.
            viewer.send(Frame::text(&format!("p:{seq}"))).unwrap();
            expected.push(format!("p:{seq}"));
        }
    }
    for want in expected {
        assert_eq!(next_text(&mut client).await, want);
    }
    viewer.close(1000, "bye").await;
    match next(&mut client).await {
        Some(Message::Close(Some(c))) => assert_eq!(u16::from(c.code), 1000),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_history_or_fall_back_to_a_snapshot() {
    let engine = Engine::new(LiveConfig {
        history: 5,
        ..config()
    })
    .unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    for seq in 1..=10 {
        ch.publish(seq, event(seq));
    }
    let (listener, addr) = support::listener().await;

    // Resumes after 7; event 11 is published between the attachment and the start.
    let (tcp, mut resumed) = support::pair(&listener, addr, None, None).await;
    let (_read, write) = tcp.into_split();
    let viewer = ch.attach(write, AttachOptions::default());
    ch.publish(11, event(11));
    viewer
        .start(Start {
            frames: vec![Frame::text("hello:resume")],
            from: StartFrom::Resume { after: 7 },
            cells: Cells::NONE,
        })
        .unwrap();
    ch.publish(12, event(12));
    assert_eq!(next_text(&mut resumed).await, "hello:resume");
    for seq in 8..=12 {
        assert_eq!(next_text(&mut resumed).await, format!("ev:{seq}"));
    }

    // After 2: the history (5 events) no longer reaches back; nothing is written, and the
    // session starts from a snapshot instead. Ahead of the show: the same.
    let (tcp, mut fresh) = support::pair(&listener, addr, None, None).await;
    let (_read2, write) = tcp.into_split();
    let viewer = ch.attach(write, AttachOptions::default());
    let resume = |after| Start {
        frames: vec![Frame::text("hello:resume")],
        from: StartFrom::Resume { after },
        cells: Cells::NONE,
    };
    assert_eq!(viewer.start(resume(2)), Err(StartError::Gap { from: 2 }));
    assert_eq!(
        viewer.start(resume(50)),
        Err(StartError::Ahead {
            after: 50,
            last: 12
        })
    );
    viewer
        .start(Start {
            frames: vec![Frame::text("hello:snapshot"), Frame::text("snap:12")],
            from: StartFrom::At { seq: 12 },
            cells: Cells::NONE,
        })
        .unwrap();
    assert_eq!(viewer.start(resume(12)), Err(StartError::Started));
    ch.publish(13, event(13));
    assert_eq!(next_text(&mut fresh).await, "hello:snapshot");
    assert_eq!(next_text(&mut fresh).await, "snap:12");
    assert_eq!(next_text(&mut fresh).await, "ev:13");
    assert_eq!(next_text(&mut resumed).await, "ev:13");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflated_values_follow_the_start_and_then_every_change() {
    let engine = Engine::new(config()).unwrap();
    let ch = engine.channel("show", 0, CatchUpCell::default());
    ch.set_stock(Frame::text("stock:1"));
    ch.set_viewers(Frame::text("viewers:1"));
    let (listener, addr) = support::listener().await;
    let (tcp, mut client) = support::pair(&listener, addr, None, None).await;
    let (_read, write) = tcp.into_split();
    let viewer = ch.attach(write, AttachOptions::default());
    // Changed before the start: the start decides which cells follow it.
    ch.set_stock(Frame::text("stock:2"));
    ch.set_viewers(Frame::text("viewers:2"));
    viewer
        .start(Start {
            frames: vec![Frame::text("hello")],
            from: StartFrom::At { seq: 0 },
            cells: Cells {
                stock: true,
                ..Cells::NONE
            },
        })
        .unwrap();
    assert_eq!(next_text(&mut client).await, "hello");
    assert_eq!(next_text(&mut client).await, "stock:2", "the newest, once");
    ch.set_viewers(Frame::text("viewers:3"));
    assert_eq!(next_text(&mut client).await, "viewers:3");
    ch.publish(1, event(1));
    assert_eq!(next_text(&mut client).await, "ev:1");
}
