//! The clients one node has heard from: when each was last seen, its open Telemetry streams
//! (where server-pushed commands such as transaction check-backs go) and the topics it
//! publishes to. Bounded: at most `max` clients, each with at most
//! [`MAX_STREAMS_PER_CLIENT`] streams and [`MAX_PUBLISHING_TOPICS`] topics.
//!
//! Node-local and not replicated: a client that connects to another node registers there.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftmq_proto::v2::TelemetryCommand;
use tokio::sync::mpsc;

use crate::batcher::now_ms;

/// A telemetry stream to a client: where server-pushed commands go.
pub type TelemetrySender = mpsc::Sender<Result<TelemetryCommand, tonic::Status>>;

/// Most topics remembered per producer for check-backs.
pub const MAX_PUBLISHING_TOPICS: usize = 1_000;

/// Most Telemetry streams remembered per client on one node (a client opens one per endpoint;
/// past this the oldest is forgotten).
pub const MAX_STREAMS_PER_CLIENT: usize = 16;

struct Client {
    last_seen_ms: u64,
    /// Its open Telemetry streams on this node, by stream number. Several, not one: the
    /// official clients open a stream per endpoint they talk to, all under one client id, and
    /// the Rust 5.0.0 client closes a route endpoint's stream after each send. A single slot,
    /// cleared by whichever stream ended last, left the long-lived stream unreachable and
    /// check-backs found no producer (issue 15: `tests/interop.rs`'s
    /// `rust_official_client_transactions` failed whenever the route stream landed on the
    /// access point's node).
    telemetry: Vec<(u64, TelemetrySender)>,
    /// Topics it publishes to (its Settings): a transaction check-back of one of them may go
    /// to it.
    publishing: BTreeSet<String>,
    /// It sent a half message or ended a transaction through this node: it has a
    /// transaction checker. A check goes to such a producer first; any producer of the topic
    /// gets it only when none is connected (a plain producer drops it: the official SDKs and
    /// ours ignore a check without a checker; the jepsen run `none` found three of every
    /// seven undecided transactions never checked that way).
    transactional: bool,
}

/// See the module docs.
pub struct Clients {
    max: usize,
    map: Mutex<BTreeMap<String, Client>>,
    /// Numbers Telemetry streams.
    streams: AtomicU64,
    /// Spreads pushed commands over a topic's producers.
    turn: AtomicU64,
}

impl Clients {
    /// An empty registry remembering at most `max` clients.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            map: Mutex::new(BTreeMap::new()),
            streams: AtomicU64::new(0),
            turn: AtomicU64::new(0),
        }
    }

    /// Records that `client` was heard from now.
    pub fn touch(&self, client: &str) {
        self.touch_at(client, now_ms());
    }

    /// Records that `client` was heard from at `now_ms`.
    pub fn touch_at(&self, client: &str, now_ms: u64) {
        let mut map = self.map.lock().unwrap();
        if map.len() >= self.max && !map.contains_key(client) {
            // At the cap: forget the longest-idle client (it reconnects as new if it is
            // still there), so the map never grows past the cap however many ids appear.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.last_seen_ms)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let c = map.entry(client.to_string()).or_insert(Client {
            last_seen_ms: 0,
            telemetry: Vec::new(),
            publishing: BTreeSet::new(),
            transactional: false,
        });
        c.last_seen_ms = c.last_seen_ms.max(now_ms);
    }

    /// How many clients are remembered.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `client` is remembered.
    pub fn contains(&self, client: &str) -> bool {
        self.map.lock().unwrap().contains_key(client)
    }

    /// Registers a Telemetry stream of `client`; the number returned closes it
    /// ([`Self::close_telemetry`]).
    pub fn open_telemetry(&self, client: &str, sender: TelemetrySender) -> u64 {
        self.touch(client);
        let id = self.streams.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.map.lock().unwrap().get_mut(client) {
            c.telemetry.retain(|(_, s)| !s.is_closed());
            if c.telemetry.len() >= MAX_STREAMS_PER_CLIENT {
                c.telemetry.remove(0);
            }
            c.telemetry.push((id, sender));
        }
        id
    }

    /// Forgets Telemetry stream `stream` of `client`; its other streams stay.
    pub fn close_telemetry(&self, client: &str, stream: u64) {
        if let Some(c) = self.map.lock().unwrap().get_mut(client) {
            c.telemetry.retain(|(id, _)| *id != stream);
        }
    }

    /// Records the topics a producer declared in its settings (capped: a client's settings
    /// are not a place to store unbounded data).
    pub fn set_publishing(&self, client: &str, topics: impl IntoIterator<Item = String>) {
        self.touch(client);
        if let Some(c) = self.map.lock().unwrap().get_mut(client) {
            c.publishing = topics.into_iter().take(MAX_PUBLISHING_TOPICS).collect();
        }
    }

    /// Records that `client` uses transactions (it sent a half message or ended one).
    pub fn mark_transactional(&self, client: &str) {
        self.touch(client);
        if let Some(c) = self.map.lock().unwrap().get_mut(client) {
            c.transactional = true;
        }
    }

    /// Hands `cmd` to one producer of `topic` with an open Telemetry stream here (a different
    /// one each time, where there are several), only to one known to use transactions if
    /// `transactional_only`; false if none took it. A stream whose buffer is full is waited
    /// for up to `wait` before the next is tried: a burst of check-backs (thousands due in
    /// the same second) must queue, not be dropped (`raftmq bench-checkback` with 20,000
    /// transactions left 44 unchecked when a full buffer counted as no producer).
    pub async fn send_to_producer(
        &self,
        topic: &str,
        cmd: &TelemetryCommand,
        transactional_only: bool,
        wait: Duration,
    ) -> bool {
        let producers: Vec<TelemetrySender> = {
            let map = self.map.lock().unwrap();
            map.values()
                .filter(|c| c.publishing.contains(topic))
                .filter(|c| c.transactional || !transactional_only)
                .flat_map(|c| c.telemetry.iter().map(|(_, s)| s.clone()))
                .collect()
        };
        if producers.is_empty() {
            return false;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
        for i in 0..producers.len() {
            let p = &producers[(start + i) % producers.len()];
            // Not `Sender::send_timeout`: it takes tokio's own timer, which the simulator's
            // runtime does not drive (every seed with transactions panicked with it).
            if let Ok(Ok(())) = tokio::time::timeout(wait, p.send(Ok(cmd.clone()))).await {
                return true;
            }
        }
        false
    }

    /// Forgets a client that said goodbye.
    pub fn remove(&self, client: &str) {
        self.map.lock().unwrap().remove(client);
    }

    /// Forgets clients not heard from since `alive_after_ms` (their Telemetry is gone too).
    pub fn forget_idle(&self, alive_after_ms: u64) {
        self.map
            .lock()
            .unwrap()
            .retain(|_, c| c.last_seen_ms >= alive_after_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(10);

    fn check() -> TelemetryCommand {
        TelemetryCommand::default()
    }

    /// The official Rust 5.0.0 producer's pattern on one node: a long-lived stream, then a
    /// second one under the same id that the client closes after a send.
    #[tokio::test]
    async fn a_closed_stream_leaves_the_clients_other_streams_reachable() {
        let clients = Clients::new(10);
        let (long_tx, mut long_rx) = mpsc::channel(4);
        let (short_tx, short_rx) = mpsc::channel(4);
        let long = clients.open_telemetry("p", long_tx);
        clients.set_publishing("p", ["T".to_string()]);
        let short = clients.open_telemetry("p", short_tx);
        assert_ne!(long, short);
        drop(short_rx);
        clients.close_telemetry("p", short);
        for _ in 0..3 {
            assert!(clients.send_to_producer("T", &check(), false, W).await);
            assert!(long_rx.try_recv().is_ok(), "the long-lived stream got it");
        }
        assert!(
            !clients.send_to_producer("U", &check(), false, W).await,
            "not a producer of U"
        );
        clients.close_telemetry("p", long);
        assert!(
            !clients.send_to_producer("T", &check(), false, W).await,
            "no stream left"
        );
        assert!(
            clients.contains("p"),
            "closing streams does not forget the client"
        );
    }

    /// A stream whose receiver is gone (closed without its end being seen yet) does not take
    /// a command: the next stream does.
    #[tokio::test]
    async fn a_dead_stream_is_skipped() {
        let clients = Clients::new(10);
        let (a_tx, a_rx) = mpsc::channel(4);
        let (b_tx, mut b_rx) = mpsc::channel(4);
        clients.open_telemetry("a", a_tx);
        clients.open_telemetry("b", b_tx);
        clients.set_publishing("a", ["T".to_string()]);
        clients.set_publishing("b", ["T".to_string()]);
        drop(a_rx);
        for _ in 0..4 {
            assert!(clients.send_to_producer("T", &check(), false, W).await);
        }
        let mut got = 0;
        while b_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 4);
    }

    /// A plain producer of the topic gets a check only when no producer known to use
    /// transactions is connected.
    #[tokio::test]
    async fn transactional_producers_are_asked_first() {
        let clients = Clients::new(10);
        let (plain_tx, mut plain_rx) = mpsc::channel(8);
        let (tx_tx, mut tx_rx) = mpsc::channel(8);
        clients.open_telemetry("plain", plain_tx);
        clients.open_telemetry("tx", tx_tx);
        clients.set_publishing("plain", ["T".to_string()]);
        clients.set_publishing("tx", ["T".to_string()]);
        assert!(
            !clients.send_to_producer("T", &check(), true, W).await,
            "none known yet"
        );
        clients.mark_transactional("tx");
        for _ in 0..4 {
            assert!(clients.send_to_producer("T", &check(), true, W).await);
        }
        assert!(plain_rx.try_recv().is_err());
        let mut got = 0;
        while tx_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 4);
    }

    /// (A runtime test: registering a stream reads the clock, which the simulator's build
    /// serves only inside its runtime.)
    #[tokio::test]
    async fn bounded_in_clients_streams_and_topics() {
        let clients = Clients::new(3);
        for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
            clients.touch_at(c, 100 + i as u64);
        }
        assert_eq!(clients.len(), 3);
        assert!(!clients.contains("a"), "the longest idle went");
        let mut keep = Vec::new();
        for _ in 0..MAX_STREAMS_PER_CLIENT + 5 {
            let (tx, rx) = mpsc::channel(1);
            keep.push(rx);
            clients.open_telemetry("d", tx);
        }
        let streams = clients.map.lock().unwrap()["d"].telemetry.len();
        assert_eq!(streams, MAX_STREAMS_PER_CLIENT);
        clients.set_publishing("d", (0..MAX_PUBLISHING_TOPICS + 7).map(|i| i.to_string()));
        let topics = clients.map.lock().unwrap()["d"].publishing.len();
        assert_eq!(topics, MAX_PUBLISHING_TOPICS);
        clients.forget_idle(u64::MAX);
        assert!(clients.is_empty());
    }
}
