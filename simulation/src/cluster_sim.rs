//! The whole-cluster simulation: a nameserver and 3 or 5 broker nodes (1–2 Raft groups) on
//! simulated nodes and disks, with producers (plain and FIFO), consumers (plain and FIFO) and
//! an offset reader, all on RaftMQ's native client, while a nemesis draws faults from a swarm
//! chosen per seed. Phases: chaos → heal → liveness (a leader per group, a probe send, a full
//! drain within a bound) → check (the message checker and the Raft oracle).
//!
//! Each fault class is on or off per seed (p = 0.5): kills (any node or the leader, process
//! crash or power loss), coordinated power loss of every node, partitions (isolate one node,
//! isolate the leader, one-way cuts from or to the leader, swizzle-clog), pauses, packet loss
//! and latency, leadership transfers. The chosen options are printed as `SIM-OPTIONS {...}`
//! with every failure, and a failing seed leaves `history.jsonl` and `results.json` behind.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::hash::Hash;
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::command::Command;
use broker::model::GroupConfig;
use madsim::net::NetSim;
use madsim::runtime::Handle;
use raft_store::group::Role;
use raftmq_client::ClientConfig;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;

use crate::broker_cluster::BrokerCluster;
use crate::msg_checker;
use crate::msg_checker::Anomaly;
use crate::msg_checker::Op;
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
};
const NAMESERVER: &str = "10.0.0.10:9876";
const INVISIBLE: Duration = Duration::from_secs(3);

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
    /// Storage errors (EIO, ENOSPC) on one node at a time (a minority).
    pub disk_faults: bool,
    /// `buggify!()` sites in the product code are live.
    pub buggify: bool,
    /// Every node's clock is off (up to ±5 s) and drifts (up to ±500 ppm, wall and monotonic
    /// alike), and clocks are stepped by up to ±10 s during the chaos.
    pub clocks: bool,
    /// A bit flips in one node's log (a minority: one node per run); the node must refuse to
    /// start and stays down (the broker cannot replace a replica yet; `raft_group_chaos` does).
    pub bit_flips: bool,
}

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
                    _ => {}
                }
            }
        }
        o
    }
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new(NAMESERVER);
    c.request_timeout = Duration::from_secs(5);
    c.long_polling_timeout = Duration::from_secs(1);
    c.route_refresh = Duration::from_secs(5);
    c
}

/// Samples every replica's role and term, for "at most one leader per term".
#[derive(Default)]
struct Oracle {
    leaders: BTreeMap<(u64, u64), BTreeSet<usize>>,
    /// Highest commit index seen per (group, term of the replica that reported it).
    committed: BTreeMap<(u64, u64), u64>,
    /// Leaders already checked for completeness, per (group, term).
    checked: BTreeSet<(u64, u64)>,
    /// Leader-completeness violations.
    incomplete: Vec<String>,
}

impl Oracle {
    /// Records one replica's metrics. A leader of term T must hold every index reported as
    /// committed by a replica in a term below T (leader completeness): such an index was
    /// committed in that lower term.
    fn sample(&mut self, g: u64, node: usize, m: &raft_store::group::GroupMetrics) {
        let term = m.term.0;
        if let Some(c) = m.committed {
            let e = self.committed.entry((g, term)).or_default();
            *e = (*e).max(c.0);
        }
        if m.role != Role::Leader {
            return;
        }
        self.leaders.entry((g, term)).or_default().insert(node);
        if self.checked.insert((g, term)) {
            let floor = self
                .committed
                .range((g, 0)..(g, term))
                .map(|(_, c)| *c)
                .max()
                .unwrap_or(0);
            let last = m.last_log.map_or(0, |l| l.0);
            if last < floor {
                self.incomplete.push(format!(
                    "group {g}: n{} leads term {term} with last log {last}, but index {floor} was committed in an earlier term",
                    node + 1
                ));
            }
        }
    }
}

/// Flips one bit in a log segment of one of the node's groups, somewhere before the segment's
/// last frame, so valid data follows the damage and recovery must refuse it (a flip in the last
/// frame is indistinguishable from a torn write; docs/guarantees.md). The node must be down.
fn flip_before_last_frame(
    disk: &raft_store::disk::SimDisk,
    groups: u64,
    rng: &mut SmallRng,
) -> Option<String> {
    use raft_store::disk::Disk;
    use raft_store::log::frame;
    let g = rng.random_range(1..=groups);
    let dir = std::path::PathBuf::from(format!("/data/group-{g}/log"));
    let mut segs: Vec<String> = disk
        .list(&dir)
        .ok()?
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    segs.sort();
    let path = dir.join(segs.last()?);
    let file = disk.open(&path).ok()?;
    let len = file.len().ok()? as usize;
    let mut bytes = vec![0u8; len];
    raft_store::disk::read_exact_at(&*file, &mut bytes, 0).ok()?;
    let mut starts = Vec::new();
    let mut pos = frame::SEGMENT_HEADER_LEN as usize;
    while let Some(h) = bytes.get(pos..).and_then(frame::parse_frame_header) {
        let end = pos + h.frame_len() as usize;
        if end > len {
            break;
        }
        starts.push(pos);
        pos = end;
    }
    let last = *starts.last()?;
    if starts.len() < 2 {
        return None;
    }
    let offset = rng.random_range(frame::SEGMENT_HEADER_LEN as usize..last) as u64;
    let bit = rng.random_range(0..8u8);
    disk.flip_bit(&path, offset, bit)
        .then(|| format!("{}@{offset} bit {bit}", path.display()))
}

/// Every 16th acknowledged send, the oracle looks for it in what each node's disk would keep
/// after a power loss right now: it must be on a majority.
struct Durability {
    disks: Vec<raft_store::disk::SimDisk>,
    violations: Mutex<Vec<String>>,
}

impl Durability {
    fn check(&self, id: &str) {
        let on = self
            .disks
            .iter()
            .filter(|d| d.durable_tail_contains(id.as_bytes(), 8 << 20))
            .count();
        if on * 2 <= self.disks.len() {
            self.violations.lock().unwrap().push(format!(
                "{id} acknowledged while durable on {on} of {} disks",
                self.disks.len()
            ));
        }
    }
}

/// Makes the FIFO consumer group orderly in every Raft group.
async fn configure_fifo(
    cluster: &tokio::sync::Mutex<BrokerCluster>,
    groups: u64,
) -> Result<(), String> {
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
        }
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// The chaos scenario (see the module docs).
pub async fn chaos(seed: u64) -> RunResult {
    let opts = Options::draw(seed);
    let opts_line = format!(
        "SIM-OPTIONS {}",
        serde_json::to_string(&opts).unwrap_or_default()
    );
    let result = run(seed, &opts).await;
    match result {
        Ok(s) => Ok(s),
        Err((e, history, anomalies)) => {
            let jsonl: String = history
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    let mut v = serde_json::to_value(op).unwrap_or_default();
                    if let Some(m) = v.as_object_mut() {
                        m.insert("index".into(), i.into());
                    }
                    format!("{v}\n")
                })
                .collect();
            let mut kinds: Vec<&str> = anomalies.iter().map(|a| a.kind).collect();
            kinds.sort();
            kinds.dedup();
            let mut by_kind: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for a in &anomalies {
                let v = by_kind.entry(a.kind).or_default();
                if v.len() < 32 {
                    v.push(&a.detail);
                }
            }
            let results = serde_json::json!({
                "valid": false,
                "bad_anomaly_types": kinds,
                "anomalies": by_kind,
                "options": opts,
                "valid_reason": e,
            });
            crate::runner::set_artifacts(jsonl, format!("{results:#}\n"));
            Err(format!("{e}\n  {opts_line}"))
        }
    }
}

type Failed = (String, Vec<Op>, Vec<Anomaly>);

async fn run(seed: u64, o: &Options) -> Result<String, Failed> {
    raft_store::rt::set_buggify(o.buggify);
    raft_store::rt::reset_node_clocks();
    let fail = |e: String, h: &History| (e, h.lock().unwrap().clone(), Vec::new());
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xc4a0_5000);
    // Clock errors come from their own stream, so switching them on changes nothing else.
    let mut clock_rng = SmallRng::seed_from_u64(seed ^ 0xc10c_4000);
    let cluster = Arc::new(tokio::sync::Mutex::new(BrokerCluster::new(
        o.nodes, o.groups,
    )));
    if o.clocks {
        let c = cluster.lock().await;
        for i in 0..o.nodes {
            let offset = clock_rng.random_range(-5_000..=5_000i64);
            let drift = clock_rng.random_range(-500..=500i64);
            raft_store::rt::set_node_clock(c.nodes.node_id(i), offset, drift);
        }
    }
    let client_node = Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.0.100".parse().unwrap())
        .build();
    let history: History = Arc::default();
    let start = tokio::time::Instant::now();
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));

    for _ in 0..200 {
        if cluster.lock().await.all_led() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Err(e) = configure_fifo(&cluster, o.groups).await {
        return Err(fail(
            format!("could not make the FIFO group orderly: {e}"),
            &history,
        ));
    }

    // The oracle samples roles and terms every 10 ms.
    let oracle = Arc::new(Mutex::new(Oracle::default()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (cluster, oracle, sampling) = (cluster.clone(), oracle.clone(), sampling.clone());
        let groups = o.groups;
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                {
                    let c = cluster.lock().await;
                    for i in 0..c.nodes.len() {
                        let Some(core) = c.core(i) else { continue };
                        for g in 1..=groups {
                            if let Ok(h) = core.group(g) {
                                let m = h.replica.metrics();
                                oracle.lock().unwrap().sample(g, i, &m);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let durability = {
        let c = cluster.lock().await;
        Arc::new(Durability {
            disks: (0..c.nodes.len())
                .map(|i| c.nodes.disk(i).clone())
                .collect(),
            violations: Mutex::new(Vec::new()),
        })
    };
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
    let mut tasks = Vec::new();
    for p in 0..o.producers {
        let (name, s) = (format!("p{p}"), stop_producers.clone());
        tasks.push(client_node.spawn(workload::produce(
            ctx.clone(),
            name,
            None,
            seed ^ (p + 1),
            s,
        )));
    }
    for p in 0..o.fifo_producers {
        let (name, group, s) = (
            format!("f{p}"),
            Some(format!("fg{p}")),
            stop_producers.clone(),
        );
        tasks.push(client_node.spawn(workload::produce(
            ctx.clone(),
            name,
            group,
            seed ^ (p + 11),
            s,
        )));
    }
    for k in 0..o.consumers {
        let (s, d) = (stop_consumers.clone(), stop_producers.clone());
        tasks.push(client_node.spawn(workload::consume(
            ctx.clone(),
            k as u32,
            false,
            seed ^ (k + 21),
            s,
            d,
        )));
    }
    if o.fifo_producers > 0 {
        let (s, d) = (stop_consumers.clone(), stop_producers.clone());
        tasks.push(client_node.spawn(workload::consume(ctx.clone(), 99, true, seed ^ 31, s, d)));
    }
    if o.puller {
        tasks.push(client_node.spawn(workload::pull(ctx.clone(), stop_consumers.clone())));
    }

    // Chaos.
    let mut kinds: Vec<&str> = Vec::new();
    for (on, k) in [
        (o.kills, "kill"),
        (o.power_loss_all, "power-loss-all"),
        (o.partitions, "partition"),
        (o.pauses, "pause"),
        (o.lossy_net, "lossy-net"),
        (o.transfers, "transfer"),
        (o.disk_faults, "disk"),
        (o.clocks, "clock-step"),
        (o.bit_flips, "bit-flip"),
    ] {
        if on {
            kinds.push(k);
        }
    }
    let mut log: Vec<String> = Vec::new();
    // The node whose disk took a bit flip: it stays down from then on.
    let mut damaged: Option<usize> = None;
    let chaos_end = start + Duration::from_millis(o.chaos_ms);
    let n = o.nodes;
    while tokio::time::Instant::now() < chaos_end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2000))).await;
        if kinds.is_empty() {
            continue;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        let hold = Duration::from_millis(rng.random_range(200..3000));
        let leader = cluster.lock().await.leader();
        let victim = match leader {
            Some(l) if rng.random::<bool>() => l,
            _ => rng.random_range(0..n),
        };
        if damaged == Some(victim) {
            continue;
        }
        match kind {
            "kill" => {
                let power = rng.random::<bool>();
                cluster.lock().await.nodes.kill(victim);
                tokio::time::sleep(hold).await;
                cluster.lock().await.nodes.restart(victim, power);
                log.push(format!("kill n{} power_loss={power} {hold:?}", victim + 1));
            }
            "power-loss-all" => {
                let mut c = cluster.lock().await;
                for i in 0..n {
                    c.nodes.kill(i);
                }
                drop(c);
                tokio::time::sleep(hold).await;
                let mut c = cluster.lock().await;
                for i in (0..n).filter(|i| damaged != Some(*i)) {
                    c.nodes.restart(i, true);
                }
                log.push(format!("power loss of all {hold:?}"));
            }
            "partition" => {
                let c = cluster.lock().await;
                let shape = rng.random_range(0..4);
                match shape {
                    0 => c.nodes.isolate(victim),
                    1 => {
                        for j in (0..n).filter(|j| *j != victim) {
                            c.nodes.clog_link(victim, j);
                        }
                    }
                    2 => {
                        for j in (0..n).filter(|j| *j != victim) {
                            c.nodes.clog_link(j, victim);
                        }
                    }
                    _ => {
                        // Swizzle: cut nodes one by one, then heal them in another order.
                        let mut order: Vec<usize> = (0..n).collect();
                        for i in (1..n).rev() {
                            order.swap(i, rng.random_range(0..=i));
                        }
                        let cut = n / 2 + 1;
                        drop(c);
                        for i in order.iter().take(cut) {
                            cluster.lock().await.nodes.isolate(*i);
                            tokio::time::sleep(Duration::from_millis(rng.random_range(50..400)))
                                .await;
                        }
                        for i in order.iter().take(cut).rev() {
                            cluster.lock().await.nodes.heal(*i);
                            tokio::time::sleep(Duration::from_millis(rng.random_range(50..400)))
                                .await;
                        }
                        log.push(format!("swizzle {order:?}"));
                        continue;
                    }
                }
                drop(c);
                tokio::time::sleep(hold).await;
                cluster.lock().await.nodes.unclog_all();
                log.push(format!(
                    "partition shape {shape} around n{} {hold:?}",
                    victim + 1
                ));
            }
            "pause" => {
                cluster.lock().await.nodes.pause(victim);
                tokio::time::sleep(hold).await;
                cluster.lock().await.nodes.resume(victim);
                log.push(format!("pause n{} {hold:?}", victim + 1));
            }
            "lossy-net" => {
                let loss = rng.random_range(0.0..0.05);
                let lat = rng.random_range(1..50u64);
                NetSim::current().update_config(|c| {
                    c.packet_loss_rate = loss;
                    c.send_latency = Duration::from_millis(1)..Duration::from_millis(lat + 1);
                });
                tokio::time::sleep(hold).await;
                NetSim::current().update_config(|c| {
                    c.packet_loss_rate = 0.0;
                    c.send_latency = Duration::from_millis(1)..Duration::from_millis(5);
                });
                log.push(format!("loss {loss:.3} latency <{lat} ms {hold:?}"));
            }
            "disk" => {
                // A failing disk on one node: its replicas stop on the first error (they never
                // retry an fsync) until the node is restarted at heal time.
                let disk = cluster.lock().await.nodes.disk(victim).clone();
                let base = disk.faults();
                let mut bad = base.clone();
                if rng.random::<bool>() {
                    bad.sync_eio = 0.05;
                    bad.write_eio = 0.01;
                } else {
                    bad.write_enospc = 0.05;
                }
                disk.set_faults(bad);
                tokio::time::sleep(hold).await;
                disk.set_faults(base);
                log.push(format!("disk errors on n{} {hold:?}", victim + 1));
            }
            "bit-flip" => {
                if damaged.is_some() {
                    continue;
                }
                let mut c = cluster.lock().await;
                c.nodes.kill(victim);
                let disk = c.nodes.disk(victim).clone();
                let Some(spot) = flip_before_last_frame(&disk, o.groups, &mut rng) else {
                    c.nodes.restart(victim, false);
                    continue;
                };
                c.nodes.restart(victim, false);
                drop(c);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut c = cluster.lock().await;
                if c.take_start_errors(victim).is_empty() {
                    return Err(fail(
                        format!(
                            "n{} started although its log was damaged ({spot}); faults {log:?}",
                            victim + 1
                        ),
                        &history,
                    ));
                }
                c.nodes.kill(victim);
                damaged = Some(victim);
                log.push(format!(
                    "bit flip on n{} ({spot}): refused to start, left down",
                    victim + 1
                ));
            }
            "clock-step" => {
                // An NTP step or an operator's `date -s`: the wall clock jumps, the rate error
                // changes. Cluster time must not jump with it.
                let offset = clock_rng.random_range(-10_000..=10_000i64);
                let drift = clock_rng.random_range(-500..=500i64);
                let id = cluster.lock().await.nodes.node_id(victim);
                raft_store::rt::set_node_clock(id, offset, drift);
                log.push(format!("clock n{} {offset:+} ms {drift:+} ppm", victim + 1));
            }
            "transfer" => {
                let c = cluster.lock().await;
                let g = rng.random_range(1..=o.groups);
                let to = rng.random_range(0..n);
                if let Some(l) = c.leader_of(g)
                    && let Some(core) = c.core(l)
                    && let Ok(h) = core.group(g)
                {
                    let group = h.replica.group().clone();
                    drop(c);
                    let _ = group.transfer_leadership(to as u64 + 1).await;
                    log.push(format!("transfer g{g} n{} -> n{}", l + 1, to + 1));
                }
            }
            _ => {}
        }
    }

    // Heal (fault injection in the product code stops too).
    raft_store::rt::set_buggify(false);
    {
        let mut c = cluster.lock().await;
        c.nodes.unclog_all();
        // A node whose storage failed runs on with stopped replicas: restart it.
        for i in 0..n {
            let stopped = c.core(i).is_some_and(|core| {
                (1..=o.groups).any(|g| {
                    core.group(g)
                        .is_ok_and(|h| h.replica.metrics().role == Role::Stopped)
                })
            });
            if stopped {
                c.nodes.kill(i);
                c.nodes.restart(i, false);
                log.push(format!("restart n{} (storage had failed)", i + 1));
            }
        }
        for i in (0..n).filter(|i| damaged != Some(*i)) {
            c.nodes.resume(i);
            c.nodes.restart(i, false);
        }
        NetSim::current().update_config(|c| {
            c.packet_loss_rate = 0.0;
            c.send_latency = Duration::from_millis(1)..Duration::from_millis(5);
        });
        let errors = c.start_errors();
        if !errors.is_empty() {
            return Err(fail(
                format!("a node failed to restart from its own disk: {errors:?}; faults {log:?}"),
                &history,
            ));
        }
    }
    stop_producers.store(true, Ordering::SeqCst);

    // Liveness: leaders, a probe send, a drain.
    let mut led = false;
    for _ in 0..300 {
        if cluster.lock().await.all_led() {
            led = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !led {
        return Err(fail(
            format!("unavailable: a group has no leader 15 s after healing; faults {log:?}"),
            &history,
        ));
    }
    let probe = client_node.spawn(workload::probe(ctx.clone(), 60)).await;
    if !matches!(probe, Ok(Ok(()))) {
        return Err(fail(
            format!("unavailable: the probe send failed after healing: {probe:?}; faults {log:?}"),
            &history,
        ));
    }
    let drained = workload::drained(&ctx, Duration::from_secs(8));
    let drain_ok = tokio::time::timeout(Duration::from_secs(90), drained)
        .await
        .is_ok();
    stop_consumers.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    sampling.store(false, Ordering::SeqCst);
    let _ = sampler.await;

    // Check.
    let history = history.lock().unwrap().clone();
    let (mut anomalies, stats) = msg_checker::check(&history);
    for v in &oracle.lock().unwrap().incomplete {
        anomalies.push(Anomaly {
            kind: "raft-leader-incomplete",
            detail: v.clone(),
        });
    }
    for ((g, term), nodes) in &oracle.lock().unwrap().leaders {
        if nodes.len() > 1 {
            anomalies.push(Anomaly {
                kind: "raft-two-leaders",
                detail: format!("group {g} term {term}: leaders {nodes:?}"),
            });
        }
    }
    anomalies.extend(compare_logs(&*cluster.lock().await, o.groups));
    for v in durability.violations.lock().unwrap().iter() {
        anomalies.push(Anomaly {
            kind: "raft-ack-not-durable",
            detail: v.clone(),
        });
    }
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
        "{} nodes, {} groups: {} ok / {} unknown ({} recovered) / {} failed sends, {} received, {} redeliveries, {} FIFO deliveries, {} pulled; {} faults; {} unsynced writes lost",
        o.nodes,
        o.groups,
        stats.sent_ok,
        stats.sent_info,
        stats.recovered,
        stats.sent_fail,
        stats.received,
        stats.redeliveries,
        stats.fifo_delivered,
        stats.pulled,
        log.len(),
        cluster.lock().await.nodes.lost_writes()
    ))
}

/// The Raft oracle after the run: every replica's committed log is identical up to the
/// smallest commit index (log matching, state-machine safety).
fn compare_logs(c: &BrokerCluster, groups: u64) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for g in 1..=groups {
        let mut logs: Vec<(usize, u64, u64, raft_store::log::LogStore)> = Vec::new();
        for i in 0..c.nodes.len() {
            let Some(core) = c.core(i) else { continue };
            let Ok(h) = core.group(g) else { continue };
            let m = h.replica.metrics();
            let log = h.replica.group().log().clone();
            let purged = log.state().0.map_or(0, |p| p.index);
            let durable = m
                .committed
                .map_or(0, |x| x.0)
                .min(m.last_log.map_or(0, |x| x.0));
            logs.push((i, durable, purged, log));
        }
        let Some(upto) = logs.iter().map(|l| l.1).min() else {
            continue;
        };
        let from = logs.iter().map(|l| l.2).max().unwrap_or(0) + 1;
        if from > upto {
            continue;
        }
        let mut reference: Option<(usize, Vec<u64>)> = None;
        for (i, _, _, log) in &logs {
            let hashes: Vec<u64> = match log.read(from..=upto) {
                Ok(es) => es
                    .iter()
                    .map(|e| {
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        format!("{e:?}").hash(&mut h);
                        h.finish()
                    })
                    .collect(),
                Err(e) => {
                    out.push(Anomaly {
                        kind: "raft-log-mismatch",
                        detail: format!("group {g} n{}: cannot read {from}..={upto}: {e}", i + 1),
                    });
                    continue;
                }
            };
            match &reference {
                None => reference = Some((*i, hashes)),
                Some((r, ref_hashes)) => {
                    if let Some(k) = (0..ref_hashes.len().max(hashes.len()))
                        .find(|k| ref_hashes.get(*k) != hashes.get(*k))
                    {
                        out.push(Anomaly {
                            kind: "raft-log-mismatch",
                            detail: format!(
                                "group {g}: n{} and n{} differ at index {}",
                                r + 1,
                                i + 1,
                                from + k as u64
                            ),
                        });
                    }
                }
            }
        }
    }
    out
}
