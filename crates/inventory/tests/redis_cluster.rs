//! The Redis inventory on a Redis Cluster of three masters, the one `scripts/test` starts
//! (NIGHTMARKET_TEST_REDIS_CLUSTER_URLS): the shared conformance suite with shows spread over
//! several masters, scripts reloaded after a flush, WAIT on the show's master, the sharded
//! pub/sub feed across masters, its recovery after a node drops the subscription, and a show
//! whose slot moves to another master (resharding). Each run uses its own key prefix.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use nightmarket_domain::{LineupEntry, ProductId, SequencedEvent, ShowEvent, ShowId};
use nightmarket_inventory::testing::{cluster_urls, run_across_a_script_flush};
use nightmarket_inventory::{Command, FeedItem, Inventory, InventoryError, RedisInventory};
use nightmarket_inventory::{EventFeed, conformance};
use tokio::sync::mpsc::Receiver;

/// Tests run in parallel and share the cluster: the one that drops every subscriber holds this
/// exclusively, the others that follow the feed share it.
static SUBSCRIBERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn prefix() -> String {
    format!("nmtest:{}:", uuid::Uuid::new_v4())
}

async fn connect(prefix: &str) -> RedisInventory {
    RedisInventory::connect_cluster(&cluster_urls(), prefix, 1000)
        .await
        .unwrap()
        .deciding_by(nightmarket_inventory::DecisionClock::Scripted)
}

/// A plain cluster connection for looking at the cluster itself.
async fn admin() -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster_urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

/// The slot of a show's keys: that of its hash tag.
async fn keyslot(conn: &mut redis::cluster_async::ClusterConnection, show: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(format!("{{{show}}}"))
        .query_async(conn)
        .await
        .unwrap()
}

/// The master (`host:port`) that owns the slot of each show's hash tag, from CLUSTER KEYSLOT
/// and CLUSTER NODES.
async fn owners(shows: &[String]) -> HashMap<String, String> {
    let mut conn = admin().await;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .unwrap();
    // `<id> <host:port@bus> <flags> <master> <ping> <pong> <epoch> <state> <slots...>`
    let mut ranges = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 || !fields[2].contains("master") {
            continue;
        }
        let addr = fields[1].split('@').next().unwrap().to_owned();
        for range in &fields[8..] {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            ranges.push((
                lo.parse::<u16>().unwrap(),
                hi.parse::<u16>().unwrap(),
                addr.clone(),
            ));
        }
    }
    let mut out = HashMap::new();
    for show in shows {
        let slot = keyslot(&mut conn, show).await;
        let (_, _, addr) = ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .unwrap_or_else(|| panic!("no master owns slot {slot}: {nodes}"));
        out.insert(show.clone(), addr.clone());
    }
    out
}

/// Show ids `<base>-<n>`, one per master: the hash tags land on every master of the cluster.
async fn one_show_per_master(base: &str) -> Vec<ShowId> {
    let candidates: Vec<String> = (0..64).map(|n| format!("{base}-{n}")).collect();
    let owner = owners(&candidates).await;
    let mut seen = BTreeSet::new();
    let mut shows = Vec::new();
    for c in &candidates {
        if seen.insert(owner[c].clone()) {
            shows.push(ShowId::parse(c.clone()).unwrap());
        }
    }
    assert!(
        shows.len() >= 3,
        "expected three masters, found {}",
        shows.len()
    );
    shows
}

/// Shows `<base>-<n>` on every master (see [`one_show_per_master`]) and an inventory under a
/// key prefix of its own, which comes first: a second "node" connects under it too.
async fn on_every_master(base: &str) -> (String, Vec<ShowId>, RedisInventory) {
    let prefix = prefix();
    let shows = one_show_per_master(base).await;
    let inv = connect(&prefix).await;
    (prefix, shows, inv)
}

/// Products `p1` and `p2`, `stock` units each, with no buyer limit short of the stock.
fn lineup(stock: u32) -> Vec<LineupEntry> {
    conformance::fixtures::lineup(stock, stock).unwrap()
}

/// Events from the feed until it has delivered, for every show, the newest of `sent`; events
/// older than the first of `sent` (left over from probing) are skipped. Also counts the
/// reconnections the feed reported meanwhile.
async fn receive(
    rx: &mut Receiver<FeedItem>,
    sent: &HashMap<ShowId, Vec<SequencedEvent>>,
) -> (HashMap<ShowId, Vec<SequencedEvent>>, usize) {
    let mut got: HashMap<ShowId, Vec<SequencedEvent>> = HashMap::new();
    let mut reconnects = 0;
    let done = |got: &HashMap<ShowId, Vec<SequencedEvent>>| {
        sent.iter()
            .all(|(show, evs)| got.get(show).and_then(|g| g.last()) == evs.last())
    };
    while !done(&got) {
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the feed went quiet")
            .expect("the feed ended");
        match item {
            FeedItem::Event(show, ev) if sent.get(&show).is_some_and(|e| ev.seq >= e[0].seq) => {
                got.entry(show).or_default().push(ev);
            }
            FeedItem::Event(..) => {}
            FeedItem::Reconnected => reconnects += 1,
        }
    }
    (got, reconnects)
}

/// Watches `shows` and waits until the subscriptions took: a probe command on each show goes
/// out until the feed delivers it. Returns how many reconnections the feed reported meanwhile.
async fn watch_until_live(
    inv: &RedisInventory,
    feed: &EventFeed,
    rx: &mut Receiver<FeedItem>,
    shows: &[ShowId],
) -> usize {
    for show in shows {
        feed.watch(show);
    }
    // GoLive is the probe; the first successful delivery per show proves its subscription.
    for show in shows {
        inv.command(show, Command::GoLive, 1).await.unwrap();
    }
    let mut pending: BTreeSet<ShowId> = shows.iter().cloned().collect();
    let mut reconnects = 0;
    for _ in 0..100 {
        while let Ok(item) = rx.try_recv() {
            match item {
                FeedItem::Event(show, _) => {
                    pending.remove(&show);
                }
                FeedItem::Reconnected => reconnects += 1,
            }
        }
        if pending.is_empty() {
            return reconnects;
        }
        // A subscription may not have taken yet when GoLive went out: probe with a pin.
        for show in &pending {
            inv.command(show, Command::Pin(ProductId::parse("p1").unwrap()), 2)
                .await
                .unwrap();
            inv.command(show, Command::Unpin, 3).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the feed never delivered events of {pending:?}");
}

/// Opens `shows` on `writer` and has `reader` follow them until its feed delivers their events
/// (see [`watch_until_live`], whose count of reconnections comes last). Keep the feed: dropping
/// it ends the subscriber.
async fn following(
    writer: &RedisInventory,
    reader: &RedisInventory,
    shows: &[ShowId],
) -> (EventFeed, Receiver<FeedItem>, usize) {
    for show in shows {
        writer.open_show(show, lineup(10)).await.unwrap();
    }
    let (feed, mut rx) = reader.event_feed();
    let reconnects = watch_until_live(writer, &feed, &mut rx, shows).await;
    (feed, rx, reconnects)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_inventory_conforms_with_shows_on_several_masters() {
    // With the even slot split of `redis-cli --cluster create`, the shows `shard-*` land on all
    // three masters (the race on one, lifecycle and flash on the two others).
    let shows: Vec<String> = conformance::SHOWS
        .iter()
        .map(|name| format!("shard-{name}"))
        .collect();
    let masters: BTreeSet<String> = owners(&shows).await.into_values().collect();
    assert!(
        masters.len() >= 2,
        "the suite's shows must span several masters, all are on {masters:?}"
    );
    let inv: Arc<dyn Inventory> = Arc::new(connect(&prefix()).await);
    conformance::run(inv, "shard").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_reads_the_claim_log_of_a_show_it_never_opened() {
    let prefix = prefix();
    let writer = connect(&prefix).await;
    let reader = connect(&prefix).await;
    conformance::claim_log_from_another_instance(&writer, &reader, "node")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_a_script_cache_flush_on_every_master() {
    let inv: Arc<dyn Inventory> = Arc::new(connect(&prefix()).await);
    // SCRIPT FLUSH goes to every master: EVALSHA then meets NOSCRIPT on each, and the script
    // is loaded again on the master that owns the show.
    let mut conn = admin().await;
    run_across_a_script_flush(inv, &mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_another_node_for_shows_on_every_master() {
    let _shared = SUBSCRIBERS.read().await;
    // Two "nodes": one runs the commands, the other only follows the feed.
    let (prefix, shows, writer) = on_every_master("feed").await;
    let reader = connect(&prefix).await;
    assert!(writer.is_cluster());
    let (_feed, mut rx, mut reconnects) = following(&writer, &reader, &shows).await;
    // Every later event arrives, per show in order.
    let mut sent: HashMap<ShowId, Vec<SequencedEvent>> = HashMap::new();
    for round in 0..3 {
        for show in &shows {
            for cmd in [
                Command::Pin(ProductId::parse("p1").unwrap()),
                Command::Unpin,
            ] {
                let events = writer.command(show, cmd, 10 + round).await.unwrap();
                sent.entry(show.clone()).or_default().extend(events);
            }
        }
    }
    let (got, more) = receive(&mut rx, &sent).await;
    assert_eq!(got, sent);
    reconnects += more;
    // Nothing dropped: the first confirmation of each subscription is not a reconnection.
    assert_eq!(
        reconnects, 0,
        "no reconnection happened, none may be reported"
    );
    for show in &shows {
        // And the history the feed's receiver repairs from agrees.
        let first = sent[show][0].seq;
        let history = writer
            .events_after(show, first - 1, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(history, sent[show]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reports_a_dropped_subscription_and_follows_again() {
    let _alone = SUBSCRIBERS.write().await;
    let (_, shows, inv) = on_every_master("drop").await;
    let (_feed, mut rx, _) = following(&inv, &inv, &shows).await;
    while rx.try_recv().is_ok() {}

    // Every master drops its subscribers, as a restart or a network cut would.
    for url in cluster_urls() {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(killed > 0, "{url} had no subscriber to drop");
    }
    // The feed says so, so the server repairs from history...
    let mut reconnected = false;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        if matches!(item, FeedItem::Reconnected) {
            reconnected = true;
            break;
        }
    }
    assert!(
        reconnected,
        "no Reconnected after the subscriptions dropped"
    );
    // ...and events of every show flow again, on every master.
    let mut pending: BTreeSet<ShowId> = shows.iter().cloned().collect();
    for _ in 0..100 {
        for show in &pending {
            let events = inv
                .command(show, Command::Pin(ProductId::parse("p1").unwrap()), 20)
                .await
                .unwrap();
            assert!(matches!(
                events.first().map(|e| &e.event),
                Some(ShowEvent::Pinned { .. })
            ));
            inv.command(show, Command::Unpin, 21).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(item) = rx.try_recv() {
            if let FeedItem::Event(show, _) = item {
                pending.remove(&show);
            }
        }
        if pending.is_empty() {
            return;
        }
    }
    panic!("no events after resubscribing for {pending:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_asks_the_master_of_the_show() {
    // The test cluster has no replicas: with a replica required, a command applies on the
    // show's master but is not acknowledged.
    let inv = connect(&prefix()).await.with_wait(1, 20);
    for show in one_show_per_master("wait").await {
        inv.open_show(&show, lineup(5)).await.unwrap();
        assert!(matches!(
            inv.command(&show, Command::GoLive, 1).await,
            Err(InventoryError::Unavailable(_))
        ));
        assert_eq!(inv.stock(&show, 0).await.unwrap().seq, 1);
    }
}

/// A connection to one node of the cluster (`host:port`), for commands about that node.
async fn node(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Moves `slot` with its keys from master `from` to master `to`, as resharding does.
async fn move_slot(slot: u16, from: &str, to: &str) {
    let (mut src, mut dst) = (node(from).await, node(to).await);
    let id = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async::<String>(&mut c)
                .await
                .unwrap()
        }
    };
    let (src_id, dst_id) = (id(&mut src).await, id(&mut dst).await);
    let setslot = |state: &'static str, id: String| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
        cmd
    };
    let _: () = setslot("IMPORTING", src_id.clone())
        .query_async(&mut dst)
        .await
        .unwrap();
    let _: () = setslot("MIGRATING", dst_id.clone())
        .query_async(&mut src)
        .await
        .unwrap();
    let (host, port) = to.split_once(':').unwrap();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(100)
            .query_async(&mut src)
            .await
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let _: () = redis::cmd("MIGRATE")
            .arg(host)
            .arg(port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query_async(&mut src)
            .await
            .unwrap();
    }
    // The new owner first, then the old one; the third master learns it by gossip.
    for conn in [&mut dst, &mut src] {
        let _: () = setslot("NODE", dst_id.clone())
            .query_async(conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_moved_to_another_master_keeps_its_state_and_its_feed() {
    // Resharding changes the cluster under every test that follows events.
    let _alone = SUBSCRIBERS.write().await;
    let (_, shows, inv) = on_every_master("move").await;
    let (show, other) = (&shows[0], &shows[1]);
    let owner = owners(&[show.to_string(), other.to_string()]).await;
    let (_feed, mut rx, _) = following(&inv, &inv, std::slice::from_ref(show)).await;
    let before = inv.stock(show, 0).await.unwrap();

    let slot = keyslot(&mut admin().await, show.as_str()).await;
    move_slot(slot, &owner[&show.to_string()], &owner[&other.to_string()]).await;
    assert_eq!(
        owners(&[show.to_string()]).await[&show.to_string()],
        owner[&other.to_string()],
        "the slot has moved"
    );

    // The inventory follows the redirection; the show's state moved with its keys.
    let after = inv.stock(show, 0).await.unwrap();
    assert_eq!((after.seq, after.version), (before.seq, before.version));
    let mut sent = HashMap::new();
    sent.insert(
        show.clone(),
        inv.command(show, Command::Pin(ProductId::parse("p1").unwrap()), 30)
            .await
            .unwrap(),
    );
    // The old master dropped the subscription; the feed subscribed at the new one and says so.
    let mut reconnected = false;
    for _ in 0..100 {
        while let Ok(item) = rx.try_recv() {
            reconnected |= matches!(item, FeedItem::Reconnected);
        }
        if reconnected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reconnected, "no Reconnected after the slot moved");
    // Events published from now on arrive through the new master.
    let events = inv.command(show, Command::Unpin, 31).await.unwrap();
    sent.insert(show.clone(), events);
    let (got, _) = receive(&mut rx, &sent).await;
    assert_eq!(got, sent);
}
