//! `broker_chaos`: a nameserver and three broker nodes ([`BrokerCluster`]) hosting one or two
//! Raft groups, with two producers and two consumers on a client node, while the nemesis kills
//! the leader or any node (process crash or power loss), isolates the leader and cuts power to
//! every node. Each seed picks its client: the hand-written imitation of the official clients
//! ([`crate::v2client`]), or RaftMQ's native client (`raftmq-client`), whose exact code runs
//! here under madsim.
//!
//! A seed passes if, after healing, every group has a leader, the nameserver's routes name
//! those leaders, the consumers drain every acknowledged send, and the message checker
//! (`checker::messages`, the one `cluster_chaos` and `jepsen` use) finds nothing: no
//! acknowledged send lost, nothing received that was never sent, bodies intact, nothing handed
//! out again by a receive that started after its ack succeeded, and no message held by two
//! consumers at once.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::harness::brokers;
use crate::harness::brokers::BrokerCluster;
use crate::msg_checker;
use crate::msg_checker::Delivered;
use crate::msg_checker::Op;
use crate::msg_checker::Result3;
use crate::nemesis::Fault;
use crate::nemesis::Nemesis;
use crate::nemesis::Plan;
use crate::nemesis::Until;
use crate::nemesis::Who;
// What both clients' receives ask for.
use crate::runner::RunResult;
use crate::v2client;
use crate::v2client::INVISIBLE;

const TOPIC: &str = "SimTopic";
const GROUP: &str = "SimGroup";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

type Shared = Arc<tokio::sync::Mutex<BrokerCluster>>;

/// What the client tasks share.
#[derive(Clone)]
struct Run {
    history: Arc<Mutex<Vec<Op>>>,
    /// Time zero of the history's timestamps.
    start: tokio::time::Instant,
    stop_producers: Arc<AtomicBool>,
    stop_consumers: Arc<AtomicBool>,
    /// The native client, rather than the official-like one.
    native: bool,
}

impl Run {
    /// Microseconds since the start.
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// The broker chaos scenario (see the module docs).
pub async fn chaos(seed: u64) -> RunResult {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xb0c3);
    let groups = rng.random_range(1..=2u64);
    // Frequent snapshots, so restarts restore consume queues from their checkpointed files
    // (own stream: existing seeds keep their schedules).
    let settings = broker::core::BrokerSettings {
        snapshot_every: brokers::snapshot_every_for(seed),
        ..Default::default()
    };
    let cluster: Shared = Arc::new(tokio::sync::Mutex::new(BrokerCluster::with_settings(
        3, groups, settings,
    )));
    let client_node = brokers::client_node();
    let start = tokio::time::Instant::now();
    // Wait for every group to have a leader before any load.
    brokers::wait_all_led(&cluster, Duration::from_secs(10)).await;
    let run = Run {
        history: Arc::default(),
        start,
        stop_producers: Arc::default(),
        stop_consumers: Arc::default(),
        native: rng.random::<bool>(),
    };
    let mut tasks = Vec::new();
    for p in 0..2u64 {
        tasks.push(client_node.spawn(produce(run.clone(), p, seed)));
    }
    for k in 0..2u64 {
        tasks.push(client_node.spawn(consume(run.clone(), k, seed)));
    }

    let plan = Plan {
        faults: vec![
            Fault::Kill(Who::Leader),
            Fault::Kill(Who::Any),
            Fault::Isolate(Who::Leader),
            Fault::PowerLossAll,
        ],
        gap_ms: 500..2500,
        hold_ms: 200..2500,
        until: Until::Rounds(3..8),
    };
    let mut nemesis = Nemesis::<_, Infallible>::new(cluster.clone(), rng, plan);
    while let Some(step) = nemesis.next().await {
        if let Some(own) = nemesis.apply(step).await {
            match own.kind {}
        }
    }
    nemesis.heal().await;
    let log = nemesis.log();

    // Heal; stop producing; let consumers drain everything acknowledged.
    run.stop_producers.store(true, Ordering::SeqCst);
    recovered(&cluster, &client_node, groups)
        .await
        .map_err(|e| format!("{e}; faults: {log:?}"))?;
    let drain_ok = tokio::time::timeout(Duration::from_secs(60), drained(&run))
        .await
        .is_ok();
    run.stop_consumers.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let history = run.history.lock().unwrap().clone();
    let stats = check(&history, drain_ok).map_err(|e| format!("{e}; faults: {log:?}"))?;
    Ok(format!(
        "{groups} groups, {} client: {} sent ok, {} unknown ({} recovered), {} received, {} redeliveries; {} faults; {} unsynced writes lost",
        if run.native {
            "native"
        } else {
            "official-like"
        },
        stats.sent_ok,
        stats.sent_info,
        stats.recovered,
        stats.received,
        stats.redeliveries,
        log.len(),
        cluster.lock().await.nodes.lost_writes()
    ))
}

/// The check phase: the queue checker finds nothing, the workload did something, and the
/// consumers drained.
fn check(history: &[Op], drain_ok: bool) -> Result<msg_checker::Stats, String> {
    let (anomalies, stats) = msg_checker::check(history);
    if !anomalies.is_empty() {
        return Err(format!(
            "{} anomalies, first: {:?}; stats {stats:?}",
            anomalies.len(),
            &anomalies[..anomalies.len().min(5)]
        ));
    }
    if stats.sent_ok == 0 || stats.received == 0 {
        return Err(format!("the workload did nothing: {stats:?}"));
    }
    if !drain_ok {
        return Err(format!(
            "consumers did not drain within 60 s; not acked: {:?}; stats {stats:?}",
            stuck(history)
        ));
    }
    Ok(stats)
}

/// Producer `p`: sends numbered messages until told to stop.
async fn produce(run: Run, p: u64, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(p * 7919));
    let mut c = v2client::Client::new(TOPIC, GROUP, CLIENT_TIMEOUT);
    let native_producer = if run.native {
        native::producer(&run.stop_producers).await
    } else {
        None
    };
    let mut n = 0u64;
    while !run.stop_producers.load(Ordering::SeqCst) {
        let id = format!("p{p}-{n}");
        n += 1;
        let body = format!("{id}:{}", "x".repeat(rng.random_range(0..64))).into_bytes();
        let invoked = run.now();
        let result = match &native_producer {
            Some(np) => native::send(np, &id, &body).await,
            None => c.send(&id, &body).await,
        };
        run.history.lock().unwrap().push(Op::Send {
            id,
            body,
            group: None,
            invoked,
            completed: run.now(),
            result,
            pos: None,
            may_repeat: false,
            topic: None,
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..15))).await;
    }
    if let Some(np) = native_producer {
        np.shutdown().await;
    }
}

/// Consumer `k`: receives and, mostly, acks until told to stop.
async fn consume(run: Run, k: u64, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(100 + k));
    let mut c = v2client::Client::new(TOPIC, GROUP, CLIENT_TIMEOUT);
    let native_consumer = if run.native {
        native::consumer(&run.stop_consumers).await
    } else {
        None
    };
    while !run.stop_consumers.load(Ordering::SeqCst) {
        let invoked = run.now();
        let got = match &native_consumer {
            Some(nc) => native::receive(nc).await,
            None => c.receive().await.map(|(addr, msgs)| {
                msgs.into_iter()
                    .map(|(id, b, a, h)| native::Delivery::Raw(id, b, a, addr.clone(), h))
                    .collect()
            }),
        };
        let Some(msgs) = got else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        run.history.lock().unwrap().push(Op::Receive {
            consumer: k as u32,
            fifo: false,
            invoked,
            completed: run.now(),
            invisible_us: INVISIBLE.as_micros() as u64,
            msgs: msgs
                .iter()
                .map(|d| {
                    let (id, body, attempt) = d.summary();
                    Delivered {
                        id,
                        body,
                        attempt,
                        pos: None,
                    }
                })
                .collect(),
        });
        for d in msgs {
            // Mostly ack; sometimes let the message expire and come back.
            if rng.random::<f64>() < 0.15 {
                continue;
            }
            let id = d.summary().0;
            let invoked = run.now();
            let result = match (&native_consumer, d) {
                (Some(nc), native::Delivery::Native(m)) => native::ack(nc, &m).await,
                (_, native::Delivery::Raw(id, _, _, addr, handle)) => {
                    c.ack(&addr, &id, &handle).await
                }
                (None, native::Delivery::Native(_)) => unreachable!(),
            };
            run.history.lock().unwrap().push(Op::Ack {
                consumer: k as u32,
                id,
                invoked,
                completed: run.now(),
                result,
            });
        }
    }
    if let Some(nc) = native_consumer {
        nc.shutdown().await;
    }
}

/// After healing: every node restarted from its own disk, every group has a leader, and
/// within a few registration rounds the nameserver names every group's actual leader first
/// (as it tells the Rust client, which never refreshes).
async fn recovered(cluster: &Shared, client_node: &NodeHandle, groups: u64) -> Result<(), String> {
    let errors = cluster.lock().await.start_errors();
    if !errors.is_empty() {
        return Err(format!(
            "a node failed to restart from its own disk: {errors:?}"
        ));
    }
    if !brokers::wait_all_led(cluster, Duration::from_secs(10)).await {
        return Err("a group has no leader 10 s after healing".into());
    }
    let mut seen = Vec::new();
    for _ in 0..50 {
        let mut probe = v2client::Client::new(TOPIC, GROUP, CLIENT_TIMEOUT);
        if let Some(qs) = client_node
            .spawn(async move { probe.query_route(true).await })
            .await
            .ok()
            .flatten()
        {
            let c = cluster.lock().await;
            seen = qs
                .iter()
                .filter_map(|q| {
                    let b = q.broker.as_ref()?;
                    let g: u64 = b.name.strip_prefix("raftmq-g")?.parse().ok()?;
                    let first = v2client::first_addr(&b.endpoints)?;
                    Some((g, first, c.leader_of(g).map(brokers::v2_addr)))
                })
                .collect();
            let groups_seen: BTreeSet<u64> = seen.iter().map(|(g, _, _)| *g).collect();
            if groups_seen.len() as u64 == groups
                && seen
                    .iter()
                    .all(|(_, first, leader)| Some(first) == leader.as_ref())
            {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "routes did not converge on the leaders within 10 s: {seen:?}"
    ))
}

/// Returns once drained: every acknowledged send was received, and nothing was handed out for
/// longer than the invisible time, so nothing in flight is left to come back.
async fn drained(run: &Run) {
    crate::workload::drained_since(&run.history, run.start, Duration::from_secs(8)).await
}

/// Up to three acknowledged sends never acked, each with its deliveries and ack attempts: what
/// a failure to drain reports.
fn stuck(history: &[Op]) -> Vec<String> {
    let acked: BTreeSet<&str> = history
        .iter()
        .filter_map(|o| match o {
            Op::Ack {
                id,
                result: Result3::Ok,
                ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let unacked = history.iter().filter_map(|o| match o {
        Op::Send {
            id,
            result: Result3::Ok,
            ..
        } if !acked.contains(id.as_str()) => Some(id.clone()),
        _ => None,
    });
    unacked
        .take(3)
        .map(|id| {
            let deliveries: Vec<(u64, u32)> = history
                .iter()
                .filter_map(|o| match o {
                    Op::Receive { invoked, msgs, .. } => msgs
                        .iter()
                        .find(|m| m.id == id)
                        .map(|m| (*invoked, m.attempt)),
                    _ => None,
                })
                .collect();
            let acks: Vec<(u64, Result3)> = history
                .iter()
                .filter_map(|o| match o {
                    Op::Ack {
                        id: a,
                        completed,
                        result,
                        ..
                    } if *a == id => Some((*completed, *result)),
                    _ => None,
                })
                .collect();
            format!("{id}: deliveries (t_us, attempt) {deliveries:?}, acks {acks:?}")
        })
        .collect()
}

/// The workload through RaftMQ's native client, mapped onto the checker's outcomes: OK,
/// definitely failed, or unknown.
mod native {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use raftmq_client::ClientConfig;
    use raftmq_client::ClientError;
    use raftmq_client::Filter;
    use raftmq_client::Message;
    use raftmq_client::Producer;
    use raftmq_client::ReceivedMessage;
    use raftmq_client::SimpleConsumer;

    use super::CLIENT_TIMEOUT;
    use super::GROUP;
    use super::TOPIC;
    use crate::harness::brokers::NAMESERVER;
    use crate::msg_checker::Result3;

    /// A received message, from either client.
    pub enum Delivery {
        Native(Box<ReceivedMessage>),
        /// id, body, attempt, endpoint, receipt handle.
        Raw(String, Vec<u8>, u32, String, String),
    }

    impl Delivery {
        pub fn summary(&self) -> (String, Vec<u8>, u32) {
            match self {
                Delivery::Native(m) => (m.message_id.clone(), m.body.clone(), m.delivery_attempt),
                Delivery::Raw(id, b, a, _, _) => (id.clone(), b.clone(), *a),
            }
        }
    }

    fn config() -> ClientConfig {
        let mut c = ClientConfig::new(NAMESERVER);
        c.request_timeout = CLIENT_TIMEOUT;
        c.long_polling_timeout = Duration::from_secs(1);
        c.route_refresh = Duration::from_secs(5);
        c
    }

    fn outcome(r: Result<(), ClientError>) -> Result3 {
        match r {
            Ok(()) => Result3::Ok,
            Err(e) if e.is_definite() => Result3::Fail,
            Err(e) => {
                if std::env::var("SIM_DEBUG_UNKNOWN").is_ok() {
                    println!("unknown: {e}");
                }
                Result3::Info
            }
        }
    }

    /// Starts a producer, retrying while the cluster comes up.
    pub async fn producer(stop: &AtomicBool) -> Option<Producer> {
        while !stop.load(Ordering::SeqCst) {
            match Producer::builder(config()).topics([TOPIC]).start().await {
                Ok(p) => return Some(p),
                Err(e) => tracing::debug!(error = %e, "producer start failed"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    pub async fn consumer(stop: &AtomicBool) -> Option<SimpleConsumer> {
        while !stop.load(Ordering::SeqCst) {
            match SimpleConsumer::builder(config(), GROUP)
                .subscribe(TOPIC, Filter::All)
                .start()
                .await
            {
                Ok(c) => return Some(c),
                Err(e) => tracing::debug!(error = %e, "consumer start failed"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    pub async fn send(p: &Producer, id: &str, body: &[u8]) -> Result3 {
        let m = Message::new(TOPIC, body.to_vec()).with_message_id(id);
        outcome(p.send(m).await.map(|_| ()))
    }

    pub async fn receive(c: &SimpleConsumer) -> Option<Vec<Delivery>> {
        match c.receive(16, super::INVISIBLE).await {
            Ok(ms) => Some(
                ms.into_iter()
                    .map(|m| Delivery::Native(Box::new(m)))
                    .collect(),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                None
            }
        }
    }

    pub async fn ack(c: &SimpleConsumer, m: &ReceivedMessage) -> Result3 {
        outcome(c.ack(m).await)
    }
}
