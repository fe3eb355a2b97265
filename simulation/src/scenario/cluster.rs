//! `cluster_chaos`, the whole-cluster simulation: a nameserver and 3 or 5 broker nodes (1–2
//! Raft groups, [`BrokerCluster`]) on simulated nodes and disks, with producers (plain and
//! FIFO), consumers (plain and FIFO) and an offset reader, all on RaftMQ's native client
//! ([`crate::workload`]), while the nemesis draws faults from a swarm chosen per seed. Phases:
//! chaos → heal → liveness (a leader per group, a probe send, a full drain within a bound) →
//! check (the message checker, `checker::messages`, and the Raft oracle,
//! [`crate::harness::oracle`]).
//!
//! Each fault class is on or off per seed (p = 0.5): kills (any node or the leader, process
//! crash or power loss), coordinated power loss of every node, partitions (isolate one node,
//! isolate the leader, one-way cuts from or to the leader, swizzle-clog), pauses, packet loss
//! and latency, leadership transfers, disk errors, clock offsets and steps, bit flips. The
//! chosen options are printed as `SIM-OPTIONS {...}` with every failure, and a failing seed
//! leaves `history.jsonl` and `results.json` behind.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::command::Command;
use broker::model::GroupConfig;
use madsim::runtime::NodeHandle;
use raftmq_client::ClientConfig;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;

use crate::harness::brokers;
use crate::harness::brokers::BrokerCluster;
use crate::harness::brokers::NAMESERVER;
use crate::harness::log_tap::LogTap;
use crate::harness::oracle;
use crate::harness::oracle::Durability;
use crate::harness::oracle::Sampler;
use crate::msg_checker;
use crate::msg_checker::Anomaly;
use crate::msg_checker::Op;
use crate::nemesis::Fault;
use crate::nemesis::Nemesis;
use crate::nemesis::Plan;
use crate::nemesis::Until;
use crate::nemesis::Who;
use crate::runner::RunResult;
use crate::workload;
use crate::workload::Ctx;
use crate::workload::History;
use crate::workload::Names;

const TOPIC: &str = "SimTopic";
const FIFO_TOPIC: &str = "SimFifoTopic";
const GROUP: &str = "SimGroup";
const FIFO_GROUP: &str = "SimFifoGroup";
const PULL_GROUP: &str = "SimPullGroup";
const NAMES: Names = Names {
    topic: TOPIC,
    fifo_topic: FIFO_TOPIC,
    group: GROUP,
    fifo_group: FIFO_GROUP,
    pull_group: PULL_GROUP,
    filtered_group: "SimFilteredGroup",
};
const INVISIBLE: Duration = Duration::from_secs(3);

type Shared = Arc<tokio::sync::Mutex<BrokerCluster>>;

mod disk_faults;
use disk_faults::bit_flip;
use disk_faults::replace;
use disk_faults::state_damage;

/// What one seed runs, drawn from the seed.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Broker nodes.
    pub nodes: usize,
    /// Raft groups.
    pub groups: u64,
    /// Plain producers.
    pub producers: u64,
    /// FIFO producers (one message group each).
    pub fifo_producers: u64,
    /// Plain consumers.
    pub consumers: u64,
    /// An offset reader pulls every queue and commits.
    pub puller: bool,
    /// Chaos phase length (ms of virtual time).
    pub chaos_ms: u64,
    /// Fault classes switched on.
    pub kills: bool,
    /// Power loss of every node at once.
    pub power_loss_all: bool,
    /// Partitions, including one-way and swizzle-clog.
    pub partitions: bool,
    /// Pauses.
    pub pauses: bool,
    /// Packet loss and latency.
    pub lossy_net: bool,
    /// Leadership transfers.
    pub transfers: bool,
    /// Storage errors (EIO, ENOSPC) or a nearly full disk on one node at a time (a minority).
    pub disk_faults: bool,
    /// `buggify!()` sites in the product code are live.
    pub buggify: bool,
    /// Every node's clock is off (up to ±5 s) and drifts (up to ±500 ppm, wall and monotonic
    /// alike), and clocks are stepped by up to ±10 s during the chaos.
    pub clocks: bool,
    /// A bit flips in one node's log (a minority: one node per run); the node must refuse to
    /// start, and is then replaced through a membership change under the workload (with
    /// retention on, the empty replica first copies a peer's snapshot and retained log:
    /// raft-store's seed).
    pub bit_flips: bool,
    /// Retention on: [`RETENTION_AGE`], [`RETENTION_SEGMENT`]-byte log segments. Old segments
    /// are deleted during the run (with lagging followers, kills, snapshots); the checker
    /// tells deleted messages from lost ones (`expired`, `premature-deletion`).
    pub retention: bool,
    /// A producer of scheduled (DELAY) messages with recalls on the plain topic (issue 14).
    pub scheduled: bool,
    /// A transactional producer on the plain topic, half of its transactions left to the
    /// brokers' check-backs (issue 15).
    pub transactions: bool,
    /// The first plain producer resends a message whose outcome is unknown with the same id
    /// until it knows (issue 15, the idempotent producer): a second copy is a `duplicate`.
    pub resend: bool,
    /// A consumer of a SQL92-filtered group on the plain topic (issue 16): it must get every
    /// message its expression matches and nothing else (`filter-lost`, `filter-mismatch`).
    pub filtered: bool,
    /// An operator resets the plain or FIFO group to the earliest message now and then during
    /// the chaos (issue 16): the checker accepts what a reset explains, nothing more.
    pub resets: bool,
}

/// Retention age when [`Options::retention`] is on.
pub const RETENTION_AGE: Duration = Duration::from_secs(4);
/// Log segment size when [`Options::retention`] is on: a few hundred messages.
pub const RETENTION_SEGMENT: u64 = 32 << 10;

impl Options {
    /// Draws the options of `seed` (`SIM_SOAK=1` makes the chaos phase ten times longer).
    pub fn draw(seed: u64) -> Options {
        let mut r = SmallRng::seed_from_u64(seed ^ 0x5eed_c1a5);
        let soak = std::env::var("SIM_SOAK").is_ok_and(|v| v == "1");
        let mut o = Options {
            nodes: if r.random::<f64>() < 0.3 { 5 } else { 3 },
            groups: r.random_range(1..=2u64),
            producers: r.random_range(1..=3u64),
            fifo_producers: r.random_range(0..=2u64),
            consumers: r.random_range(1..=3u64),
            puller: r.random::<bool>(),
            chaos_ms: r.random_range(8_000..20_000u64) * if soak { 10 } else { 1 },
            kills: r.random::<bool>(),
            power_loss_all: r.random::<bool>(),
            partitions: r.random::<bool>(),
            pauses: r.random::<bool>(),
            lossy_net: r.random::<bool>(),
            transfers: r.random::<bool>(),
            disk_faults: r.random::<bool>(),
            buggify: r.random::<bool>(),
            clocks: r.random::<bool>(),
            bit_flips: r.random::<bool>(),
            retention: r.random::<bool>(),
            scheduled: r.random::<bool>(),
            transactions: r.random::<bool>(),
            // Drawn last: the seeds before them keep every other option.
            resend: r.random::<bool>(),
            filtered: r.random::<bool>(),
            resets: r.random::<bool>(),
        };
        // `SIM_MASK=partitions,kills` turns classes off after drawing, keeping the stream.
        if let Ok(mask) = std::env::var("SIM_MASK") {
            for m in mask.split(',') {
                match m.trim() {
                    "kills" => o.kills = false,
                    "power_loss_all" => o.power_loss_all = false,
                    "partitions" => o.partitions = false,
                    "pauses" => o.pauses = false,
                    "lossy_net" => o.lossy_net = false,
                    "transfers" => o.transfers = false,
                    "disk_faults" => o.disk_faults = false,
                    "buggify" => o.buggify = false,
                    "clocks" => o.clocks = false,
                    "bit_flips" => o.bit_flips = false,
                    "retention" => o.retention = false,
                    "scheduled" => o.scheduled = false,
                    "transactions" => o.transactions = false,
                    "resend" => o.resend = false,
                    "filtered" => o.filtered = false,
                    "resets" => o.resets = false,
                    _ => {}
                }
            }
        }
        o
    }
}
impl Options {
    /// The nemesis' plan: every class switched on, for `chaos_ms` from `start`.
    fn plan(&self, start: tokio::time::Instant) -> Plan<Own> {
        let w = Who::LeaderOrAny;
        let classes = [
            (self.kills, Fault::Kill(w)),
            (self.power_loss_all, Fault::PowerLossAll),
            (self.partitions, Fault::Partition(w)),
            (self.pauses, Fault::Pause(w)),
            (self.lossy_net, Fault::LossyNet),
            (self.transfers, Fault::Own(Own::Transfer, w)),
            (self.disk_faults, Fault::Own(Own::DiskErrors, w)),
            (self.clocks, Fault::Own(Own::ClockStep, w)),
            (self.bit_flips, Fault::Own(Own::BitFlip, w)),
        ];
        Plan {
            faults: classes
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| f)
                .collect(),
            gap_ms: 300..2000,
            hold_ms: 200..3000,
            until: Until::Deadline(start + Duration::from_millis(self.chaos_ms)),
        }
    }
}

/// This scenario's own fault classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    /// Move one group's leadership to a random node.
    Transfer,
    /// Storage errors (EIO or ENOSPC), or a nearly full disk, on one node for the hold.
    DiskErrors,
    /// Step one node's wall clock and change its drift.
    ClockStep,
    /// Flip a bit in one node's log; it must refuse to start, and stays down.
    BitFlip,
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new(NAMESERVER);
    c.request_timeout = Duration::from_secs(5);
    c.long_polling_timeout = Duration::from_secs(1);
    c.route_refresh = Duration::from_secs(5);
    c
}

/// A failure: what went wrong, the history so far, and the anomalies found (if it got as far
/// as checking).
type Failed = (String, Vec<Op>, Vec<Anomaly>);

/// The chaos scenario (see the module docs).
pub async fn chaos(seed: u64) -> RunResult {
    let opts = Options::draw(seed);
    let opts_line = format!(
        "SIM-OPTIONS {}",
        serde_json::to_string(&opts).unwrap_or_default()
    );
    match run(seed, &opts).await {
        Ok(summary) => Ok(summary),
        Err((e, history, anomalies)) => {
            let results = results_json(&opts, &e, &anomalies, &history);
            crate::runner::set_artifacts(history_jsonl(&history), results);
            Err(format!("{e}\n  {opts_line}"))
        }
    }
}

/// The history as Jepsen-style JSON lines, each op with its index.
/// The history in the shared `history.jsonl` format (`checker::jsonl`, as `jepsen` writes it).
fn history_jsonl(history: &[Op]) -> String {
    checker::jsonl::to_jsonl(&checker::jsonl::events(history, &[]))
}

/// The verdict in the shared `results.json` layout (`checker::jsonl::results`), with the
/// seed's options; a failed seed is invalid whatever failed (a check, liveness or the oracle).
fn results_json(opts: &Options, reason: &str, anomalies: &[Anomaly], history: &[Op]) -> String {
    let stats = crate::msg_checker::check(history).1;
    let mut results = checker::jsonl::results(anomalies, stats, None);
    results.valid = false.into();
    results.valid_reason = reason.to_string();
    let mut v = serde_json::to_value(&results).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "options".into(),
            serde_json::to_value(opts).unwrap_or_default(),
        );
    }
    format!("{v:#}\n")
}

/// The flags that stop the clients: producers first (at heal), consumers once drained.
#[derive(Clone, Default)]
struct Stops {
    producers: Arc<AtomicBool>,
    consumers: Arc<AtomicBool>,
}

/// One seed: setup, chaos, heal, liveness, check.
async fn run(seed: u64, o: &Options) -> Result<String, Failed> {
    raft_store::rt::set_buggify(o.buggify);
    raft_store::rt::reset_node_clocks();
    let rng = SmallRng::seed_from_u64(seed ^ 0xc4a0_5000);
    // Clock errors come from their own stream, so switching them on changes nothing else.
    let mut clock_rng = SmallRng::seed_from_u64(seed ^ 0xc10c_4000);
    let mut settings = broker::core::BrokerSettings {
        snapshot_every: brokers::snapshot_every_for(seed),
        ..Default::default()
    };
    if o.retention {
        settings.retention = broker::retention::RetentionSettings {
            max_age: Some(RETENTION_AGE),
            max_bytes: None,
            interval: Duration::from_millis(500),
            delete_below_free: None,
        };
        settings.segment_bytes = RETENTION_SEGMENT;
    }
    settings.transactions = tx_settings();
    let cluster: Shared = Arc::new(tokio::sync::Mutex::new(BrokerCluster::with_settings(
        o.nodes, o.groups, settings,
    )));
    if o.clocks {
        let c = cluster.lock().await;
        for i in 0..o.nodes {
            let offset = clock_rng.random_range(-5_000..=5_000i64);
            let drift = clock_rng.random_range(-500..=500i64);
            raft_store::rt::set_node_clock(c.nodes.node_id(i), offset, drift);
        }
    }
    let client_node = brokers::client_node();
    let history: History = Arc::default();
    let fail = |e: String| -> Failed { (e, history.lock().unwrap().clone(), Vec::new()) };
    let start = tokio::time::Instant::now();
    brokers::wait_all_led(&cluster, Duration::from_secs(10)).await;
    configure_fifo(&cluster, o.groups)
        .await
        .map_err(|e| fail(format!("could not make the FIFO group orderly: {e}")))?;

    let sampler = Sampler::start(cluster.clone());
    let tap = o.retention.then(|| LogTap::start(cluster.clone()));
    let durability = Arc::new(Durability::new(&*cluster.lock().await));
    let ctx = Ctx {
        config: config(),
        names: NAMES,
        history: history.clone(),
        start,
        invisible: INVISIBLE,
        single_group: o.groups == 1,
        send_pause_ms: (1, 20),
        on_ack: Some({
            let d = durability.clone();
            Arc::new(move |id: &str| d.check(id))
        }),
    };
    let stops = Stops::default();
    let tasks = spawn_clients(&client_node, &ctx, o, seed, &stops);

    let mut nemesis = Nemesis::new(cluster.clone(), rng, o.plan(start));
    let damaged = chaos_phase(&cluster, &mut nemesis, o, &mut clock_rng)
        .await
        .map_err(fail)?;
    heal(&cluster, &mut nemesis).await.map_err(fail)?;
    if let Some(v) = damaged {
        replace(&cluster, v, o.groups).await.map_err(|e| {
            fail(format!(
                "replacing n{}: {e}; faults {:?}",
                v + 1,
                nemesis.log()
            ))
        })?;
        nemesis.note(format!(
            "n{} replaced: removed, wiped, rejoined, added",
            v + 1
        ));
    }
    stops.producers.store(true, Ordering::SeqCst);
    let log = nemesis.log();
    let txns = o.transactions;
    let drain_ok = liveness(&cluster, &client_node, &ctx, tap.as_ref(), txns)
        .await
        .map_err(|e| fail(format!("{e}; faults {log:?}")))?;
    stops.consumers.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }

    let mut raft = sampler.stop().await;
    raft.extend(oracle::compare_logs(&*cluster.lock().await));
    raft.extend(durability.anomalies());
    let mut missed = 0;
    if let Some(t) = tap {
        let (premature, m) = t.stop(RETENTION_AGE).await;
        raft.extend(premature);
        missed = m;
    }
    let history = history.lock().unwrap().clone();
    let summary = check(history, raft, drain_ok, log)?;
    let summary = if o.retention {
        let starts = log_starts(&cluster).await;
        format!("{summary}; retention: log starts {starts:?}, {missed} entries purged unread")
    } else {
        summary
    };
    let replaced = log
        .iter()
        .find(|l| l.ends_with("replaced: removed, wiped, rejoined, added"))
        .map_or(String::new(), |l| format!("; {l}"));
    Ok(format!(
        "{} nodes, {} groups: {summary}; {} faults; {} unsynced writes lost{replaced}",
        o.nodes,
        o.groups,
        log.len(),
        cluster.lock().await.nodes.lost_writes()
    ))
}

/// Makes the FIFO consumer group orderly in every Raft group.
async fn configure_fifo(cluster: &Shared, groups: u64) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..100 {
        let mut all = true;
        for g in 1..=groups {
            // Submit on the leader itself: the supervisor task has no network address to
            // forward from.
            let core = {
                let c = cluster.lock().await;
                c.leader_of(g).and_then(|l| c.core(l))
            };
            let Some(core) = core else {
                last = format!("group {g} has no leader");
                all = false;
                continue;
            };
            let mut cfg = GroupConfig::with_defaults(FIFO_GROUP);
            cfg.fifo = true;
            if let Err(e) = core.submit(g, Command::UpsertGroup(cfg)).await {
                last = format!("group {g}: {e}");
                all = false;
            }
            // The resending producer's copies are deduplicated from the window's entry on
            // (a send stored before it is not remembered): the workload starts after it.
            if !core
                .group(g)
                .is_ok_and(|h| h.replica.read(|s| s.dedup.window.is_some()))
            {
                last = format!("group {g}: no deduplication window yet");
                all = false;
            }
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// Starts the workload on the client node: plain and FIFO producers, plain consumers, a FIFO
/// consumer if anything is sent FIFO, and the offset reader if drawn.
fn spawn_clients(
    client_node: &NodeHandle,
    ctx: &Ctx,
    o: &Options,
    seed: u64,
    stops: &Stops,
) -> Vec<madsim::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for p in 0..o.producers {
        let (name, s) = (format!("p{p}"), stops.producers.clone());
        let resend = o.resend && p == 0;
        let producer = workload::produce(ctx.clone(), name, None, seed ^ (p + 1), s, resend);
        tasks.push(client_node.spawn(producer));
    }
    for p in 0..o.fifo_producers {
        let (name, group) = (format!("f{p}"), Some(format!("fg{p}")));
        let s = stops.producers.clone();
        let producer = workload::produce(ctx.clone(), name, group, seed ^ (p + 11), s, false);
        tasks.push(client_node.spawn(producer));
    }
    if o.scheduled {
        // Cluster time starts at the first leader's wall clock, up to 5 s off the client's
        // when clocks are skewed (`Options::clocks`), and moves toward later leaders' at
        // 1 ms/s: early-delivery is judged with that much slack then, exactly otherwise.
        let slack = if o.clocks {
            Duration::from_millis(5_000 + o.chaos_ms / 500 + 1_000)
        } else {
            Duration::ZERO
        };
        let s = stops.producers.clone();
        let producer = workload::schedule(ctx.clone(), "s0".into(), slack, seed ^ 41, s);
        tasks.push(client_node.spawn(producer));
    }
    if o.transactions {
        let s = stops.producers.clone();
        let producer = workload::transact(ctx.clone(), "t0".into(), seed ^ 51, s);
        tasks.push(client_node.spawn(producer));
    }
    for k in 0..o.consumers {
        let (s, d) = (stops.consumers.clone(), stops.producers.clone());
        let consumer = workload::consume(ctx.clone(), k as u32, false, seed ^ (k + 21), s, d);
        tasks.push(client_node.spawn(consumer));
    }
    if o.fifo_producers > 0 {
        let (s, d) = (stops.consumers.clone(), stops.producers.clone());
        tasks.push(client_node.spawn(workload::consume(ctx.clone(), 99, true, seed ^ 31, s, d)));
    }
    if o.filtered {
        let (s, d) = (stops.consumers.clone(), stops.producers.clone());
        let k = checker::messages::filtered::FILTERED_CONSUMER;
        let consumer = workload::consume(ctx.clone(), k, false, seed ^ 61, s, d);
        tasks.push(client_node.spawn(consumer));
    }
    if o.puller {
        tasks.push(client_node.spawn(workload::pull(ctx.clone(), stops.consumers.clone())));
    }
    if o.resets {
        let admins = (0..o.nodes).map(brokers::v2_addr).collect();
        let (fifo, s) = (o.fifo_producers > 0, stops.producers.clone());
        tasks.push(client_node.spawn(workload::reset(ctx.clone(), admins, fifo, seed ^ 71, s)));
    }
    tasks
}

/// The chaos phase: the nemesis' loop, with this scenario's own faults applied here.
async fn chaos_phase(
    cluster: &Shared,
    nemesis: &mut Nemesis<BrokerCluster, Own>,
    o: &Options,
    clock_rng: &mut SmallRng,
) -> Result<Option<usize>, String> {
    // One node at most takes a bit flip (a minority): it stays down from then on (until it is
    // replaced after the heal).
    let mut damaged = None;
    while let Some(step) = nemesis.next().await {
        let Some(own) = nemesis.apply(step).await else {
            continue;
        };
        let v = own.victim;
        match own.kind {
            Own::Transfer => transfer(cluster, nemesis, o).await,
            Own::DiskErrors => {
                // A failing disk on one node: its replicas stop on the first error (they never
                // retry an fsync) until the node is restarted at heal time.
                let disk = cluster.lock().await.nodes.disk(v).clone();
                let base = disk.faults();
                let mut bad = base.clone();
                let what = if nemesis.rng().random::<bool>() {
                    bad.sync_eio = 0.05;
                    bad.write_eio = 0.01;
                    "errors"
                // ENOSPC or nearly full by the parity of the drawn hold: no extra draw, so
                // the regression seeds keep their random stream.
                } else if own.hold.as_millis() % 2 == 0 {
                    bad.write_enospc = 0.05;
                    "ENOSPC"
                } else {
                    // Nearly full: the node's guard refuses sends (definite failures) while
                    // receives and acks go on; sends come back once it reads free space again.
                    bad.reported_free = 0;
                    "nearly full"
                };
                disk.set_faults(bad);
                tokio::time::sleep(own.hold).await;
                disk.set_faults(base);
                nemesis.note(format!("disk {what} on n{} {:?}", v + 1, own.hold));
            }
            Own::ClockStep => {
                // An NTP step or an operator's `date -s`: the wall clock jumps, the rate error
                // changes. Cluster time must not jump with it.
                let offset = clock_rng.random_range(-10_000..=10_000i64);
                let drift = clock_rng.random_range(-500..=500i64);
                let id = cluster.lock().await.nodes.node_id(v);
                raft_store::rt::set_node_clock(id, offset, drift);
                nemesis.note(format!("clock n{} {offset:+} ms {drift:+} ppm", v + 1));
            }
            // A second bit flip damages a node's state instead (a consume-queue file lost,
            // or its snapshot): the node must repair it at its restart and take part again.
            Own::BitFlip if damaged.is_some() => {
                if damaged != Some(v) {
                    state_damage(cluster, nemesis, v).await?;
                }
            }
            Own::BitFlip => {
                if bit_flip(cluster, nemesis, v).await? {
                    damaged = Some(v);
                }
            }
        }
    }
    Ok(damaged)
}

/// Asks the leader of a random group to hand leadership to a random node.
async fn transfer(cluster: &Shared, nemesis: &mut Nemesis<BrokerCluster, Own>, o: &Options) {
    let c = cluster.lock().await;
    let g = nemesis.rng().random_range(1..=o.groups);
    let to = nemesis.rng().random_range(0..o.nodes);
    if let Some(l) = c.leader_of(g)
        && let Some(core) = c.core(l)
        && let Ok(h) = core.group(g)
    {
        let group = h.replica.group().clone();
        drop(c);
        let _ = group.transfer_leadership(to as u64 + 1).await;
        nemesis.note(format!("transfer g{g} n{} -> n{}", l + 1, to + 1));
    }
}

/// Heals: fault injection in the product code stops, a node whose storage failed (it runs on
/// with stopped replicas) is restarted, the nemesis undoes what is left, and every node but
/// the damaged one must have restarted from its own disk.
async fn heal(cluster: &Shared, nemesis: &mut Nemesis<BrokerCluster, Own>) -> Result<(), String> {
    raft_store::rt::set_buggify(false);
    {
        let mut c = cluster.lock().await;
        for i in 0..c.nodes.len() {
            if c.has_stopped_replica(i) {
                c.nodes.kill(i);
                c.nodes.restart(i, false);
                nemesis.note(format!("restart n{} (storage had failed)", i + 1));
            }
        }
    }
    nemesis.heal().await;
    let errors = cluster.lock().await.start_errors();
    if !errors.is_empty() {
        return Err(format!(
            "a node failed to restart from its own disk: {errors:?}; faults {:?}",
            nemesis.log()
        ));
    }
    Ok(())
}

/// Check-backs within the run: first after a second, then every second, three at most.
fn tx_settings() -> broker::checkback::TxSettings {
    broker::checkback::TxSettings {
        check_after: Duration::from_secs(1),
        check_interval: Duration::from_secs(1),
        max_checks: 3,
        after_max: broker::command::AfterMax::Discard,
    }
}

/// Liveness after healing: every group elects a leader within 15 s, a probe send succeeds,
/// and the consumers drain. Returns whether they drained within 90 s (a bound the checker
/// reports as `unavailable` unless it found the cause, a lost message).
async fn liveness(
    cluster: &Shared,
    client_node: &NodeHandle,
    ctx: &Ctx,
    tap: Option<&LogTap>,
    transactions: bool,
) -> Result<bool, String> {
    if !brokers::wait_all_led(cluster, Duration::from_secs(15)).await {
        return Err("unavailable: a group has no leader 15 s after healing".into());
    }
    let probe = client_node.spawn(workload::probe(ctx.clone(), 60)).await;
    if !matches!(probe, Ok(Ok(()))) {
        return Err(format!(
            "unavailable: the probe send failed after healing: {probe:?}"
        ));
    }
    if transactions {
        // Healed and led: an undecided transaction is checked within its first delay, one
        // more interval (a check proposed by a leader that then lost leadership is made again
        // an interval later) and a second of slack (`txn-unchecked`).
        let t = tx_settings();
        let within = t.check_after + t.check_interval + Duration::from_secs(1);
        let probe = workload::check_back_probe(ctx.clone(), 4, within);
        let _ = client_node.spawn(probe).await;
    }
    // A message retention deleted before anyone received it is not waited for.
    let drained = async {
        loop {
            let deleted = match tap {
                Some(t) => t.deleted(&log_starts(cluster).await),
                None => BTreeSet::new(),
            };
            let now = ctx.start.elapsed().as_micros() as u64;
            let h = ctx.history.lock().unwrap().clone();
            if workload::is_drained(&h, now, Duration::from_secs(8), &|id| deleted.contains(id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let ok = tokio::time::timeout(Duration::from_secs(90), drained)
        .await
        .is_ok();
    if let Some(t) = tap {
        // What retention deleted, for the checker (`expired` rather than `lost`).
        let invoked = ctx.now();
        t.catch_up(&*cluster.lock().await);
        let ids: Vec<String> = t.deleted(&log_starts(cluster).await).into_iter().collect();
        ctx.record(Op::Expired {
            ids,
            invoked,
            completed: ctx.now(),
            // The tap checks each deletion itself, in cluster time (`LogTap::stop`).
            age_us: None,
        });
    }
    Ok(ok)
}

/// Each group's log start (retention deleted every message in entries below it), as its
/// leader has applied it.
async fn log_starts(cluster: &Shared) -> BTreeMap<u64, u64> {
    let c = cluster.lock().await;
    (1..=c.groups())
        .filter_map(|g| {
            let core = c.leader_of(g).and_then(|l| c.core(l))?;
            let h = core.group(g).ok()?;
            Some((g, h.replica.read(|s| s.log_start)))
        })
        .collect()
}

/// The check phase: the message checker over the history, plus the Raft oracle's findings
/// (`raft`), plus `unavailable` if the consumers did not drain and nothing explains why.
fn check(
    history: Vec<Op>,
    raft: Vec<Anomaly>,
    drain_ok: bool,
    log: &[String],
) -> Result<String, Failed> {
    let (mut anomalies, stats) = msg_checker::check(&history);
    anomalies.extend(raft);
    if !drain_ok && !anomalies.iter().any(|a| a.kind == "lost") {
        anomalies.push(Anomaly {
            kind: "unavailable",
            detail: "consumers did not drain within 90 s of healing".into(),
        });
    }
    if !anomalies.is_empty() {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &anomalies {
            *kinds.entry(a.kind).or_default() += 1;
        }
        return Err((
            format!(
                "{kinds:?}; first: {:?}; stats {stats:?}; faults {log:?}",
                &anomalies[..anomalies.len().min(3)]
            ),
            history,
            anomalies,
        ));
    }
    if stats.sent_ok == 0 || stats.received == 0 {
        return Err((
            format!("the workload did nothing: {stats:?}; faults {log:?}"),
            history,
            Vec::new(),
        ));
    }
    Ok(format!(
        "{} ok / {} unknown ({} recovered) / {} failed sends, {} received, {} redeliveries, {} FIFO deliveries, {} pulled, {} expired, {} resets",
        stats.sent_ok,
        stats.sent_info,
        stats.recovered,
        stats.sent_fail,
        stats.received,
        stats.redeliveries,
        stats.fifo_delivered,
        stats.pulled,
        stats.expired,
        stats.resets,
    ))
}
