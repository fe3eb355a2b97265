//! A 3-replica Raft group on simulated nodes and disks, and the chaos scenario that drives it.
//!
//! Each replica runs on its own madsim node (10.0.0.1–3) with a [`SimDisk`] the harness owns,
//! so a kill followed by a restart is either a process crash (unsynced writes survive in the
//! page cache) or a power loss (they are lost, possibly torn). Clients run on the harness node
//! and hand each proposal to a task on the chosen replica's node, as a co-located broker would;
//! a proposal in flight when its node dies has an unknown outcome.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raft_store::Error;
use raft_store::disk::Disk;
use raft_store::group::Group;
use raft_store::group::GroupConfig;
use raft_store::group::Role;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::types::GroupId;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::checker;
use crate::history::Outcome;
use crate::history::Proposal;
use crate::recorder::Recorder;
use crate::runner::RunResult;
use crate::sim_nodes;
use crate::sim_nodes::Nodes;

type Slot = Arc<Mutex<Option<Arc<Group<Recorder>>>>>;

/// The simulated group.
pub struct RaftCluster {
    nodes: Nodes,
    slots: Vec<Slot>,
    /// Errors replicas hit while starting (a replica must always restart from its own disk).
    start_errors: Arc<Mutex<Vec<String>>>,
    /// Each slot's node id: a replacement replica gets a fresh one.
    ids: Vec<Arc<AtomicU64>>,
    /// Whether a slot holds a replacement that joins rather than bootstraps.
    joining: Vec<Arc<AtomicBool>>,
}

fn addr(i: usize) -> String {
    format!("{}:5000", sim_nodes::ip(i))
}

impl RaftCluster {
    /// Builds and boots `n` replicas.
    pub fn new(n: usize) -> Self {
        let members: BTreeMap<u64, String> = (0..n).map(|i| (i as u64 + 1, addr(i))).collect();
        let start_errors = Arc::new(Mutex::new(Vec::new()));
        let slots: Vec<Slot> = (0..n).map(|_| Arc::new(Mutex::new(None))).collect();
        let ids: Vec<Arc<AtomicU64>> = (0..n)
            .map(|i| Arc::new(AtomicU64::new(i as u64 + 1)))
            .collect();
        let joining: Vec<Arc<AtomicBool>> =
            (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let (s, errs) = (slots.clone(), start_errors.clone());
        let (id_of, join_of) = (ids.clone(), joining.clone());
        // fsync takes 0.2-4 ms of virtual time: the window where a crash loses what an early
        // acknowledgement would have promised.
        let faults = raft_store::disk::SimDiskFaults {
            sync_latency: (Duration::from_micros(200), Duration::from_millis(4)),
            ..Default::default()
        };
        let nodes = Nodes::new(n, faults, move |i, disk| {
            let (slot, members, errs) = (s[i].clone(), members.clone(), errs.clone());
            let id = id_of[i].load(Ordering::SeqCst);
            let join = join_of[i].load(Ordering::SeqCst);
            async move {
                *slot.lock().unwrap() = None;
                let registry = Registry::new(raftmq_proto::auth::ClusterKey::insecure_for_tests());
                let listen: SocketAddr = addr(i).parse().unwrap();
                let reg = registry.clone();
                tokio::spawn(async move {
                    let _ =
                        raft_store::server::serve(listen, reg, 64 << 20, std::future::pending())
                            .await;
                });
                let mut cfg = GroupConfig::new(GroupId(1), id, members, "/data/g1");
                cfg.join = join;
                cfg.snapshot_every = 200;
                cfg.log.segment_bytes = 16 << 10;
                cfg.log.index_interval_bytes = 1 << 10;
                match Group::start(
                    cfg,
                    Arc::new(disk),
                    Recorder::default(),
                    &registry,
                    &Channels::new(raftmq_proto::auth::ClusterKey::insecure_for_tests()),
                )
                .await
                {
                    Ok(g) => *slot.lock().unwrap() = Some(Arc::new(g)),
                    Err(e) => errs
                        .lock()
                        .unwrap()
                        .push(format!("n{} failed to start: {e}", i + 1)),
                }
                std::future::pending::<()>().await;
            }
        });
        RaftCluster {
            nodes,
            slots,
            start_errors,
            ids,
            joining,
        }
    }

    /// Flips one bit inside the first sealed log segment of replica `i` (media corruption that
    /// recovery must detect, not mistake for a torn tail). The replica must be down. Returns
    /// the damaged spot, or `None` if the replica has no sealed segment yet.
    pub async fn flip_bit_in_sealed_segment(&self, i: usize, rng: &mut SmallRng) -> Option<String> {
        let disk = self.nodes.disk(i).clone();
        let dir = std::path::Path::new("/data/g1/log");
        let mut segs: Vec<String> = disk
            .list(dir)
            .ok()?
            .into_iter()
            .filter(|n| n.ends_with(".seg"))
            .collect();
        segs.sort();
        if segs.len() < 2 {
            return None;
        }
        let path = dir.join(&segs[0]);
        let len = disk.file_len(&path)?;
        // Past the 32-byte segment header: a frame's header or payload.
        let offset = rng.random_range(32..len);
        let bit = rng.random_range(0..8u8);
        disk.flip_bit(&path, offset, bit)
            .then(|| format!("{}@{offset} bit {bit}", path.display()))
    }

    /// Startup failures of replica `i`, removed from the list (they were expected).
    pub fn take_start_errors(&self, i: usize) -> Vec<String> {
        sim_nodes::take_errors_of(&self.start_errors, i)
    }

    /// Replica `i`'s current node id.
    pub fn node_id(&self, i: usize) -> u64 {
        self.ids[i].load(Ordering::SeqCst)
    }

    /// Empties replica `i`'s disk (it must be down) and makes its next start a replacement
    /// with node id `new_id` that waits to be added.
    pub async fn wipe_for_replacement(&self, i: usize, new_id: u64) -> std::io::Result<()> {
        let disk = self.nodes.disk(i).clone();
        for dir in ["/data/g1/log", "/data/g1/sm"] {
            let dir = std::path::Path::new(dir);
            let Ok(names) = disk.list(dir) else { continue };
            for n in names {
                disk.remove(&dir.join(n))?;
            }
            disk.sync_dir(dir).await?;
        }
        self.ids[i].store(new_id, Ordering::SeqCst);
        self.joining[i].store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if there are no replicas.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The running group of replica `i`, if it is up.
    pub fn group(&self, i: usize) -> Option<Arc<Group<Recorder>>> {
        if !self.nodes.is_alive(i) {
            return None;
        }
        self.slots[i].lock().unwrap().clone()
    }

    /// Kills replica `i`'s process.
    pub fn kill(&mut self, i: usize) {
        self.nodes.kill(i);
        *self.slots[i].lock().unwrap() = None;
    }

    /// Restarts replica `i`; with `power_loss` its disk first loses what was not synced.
    pub fn restart(&mut self, i: usize, power_loss: bool) {
        self.nodes.restart(i, power_loss);
    }

    /// Cuts replica `i` off the network (both directions).
    pub fn isolate(&mut self, i: usize) {
        self.nodes.isolate(i);
    }

    /// Reconnects replica `i`.
    pub fn heal(&mut self, i: usize) {
        self.nodes.heal(i);
    }

    /// Whether replica `i`'s process is up.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes.is_alive(i)
    }

    /// The replica that leads with the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len())
            .filter_map(|i| self.group(i).map(|g| (i, g.metrics())))
            .filter(|(_, m)| m.role == Role::Leader)
            .max_by_key(|(_, m)| m.term)
            .map(|(i, _)| i)
    }

    /// Waits until a leader is known, up to `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// A proposal of `value` on replica `i`, ready to await without borrowing the cluster
    /// (so a harness can release its lock while the proposal is in flight).
    pub fn proposal(
        &self,
        i: usize,
        value: Vec<u8>,
    ) -> impl std::future::Future<Output = Outcome> + use<> {
        let group = self.group(i);
        let node = self.nodes.handle(i);
        async move {
            let (Some(g), Some(node)) = (group, node) else {
                return Outcome::Fail;
            };
            let task = node.spawn(async move { g.propose(value).await });
            match tokio::time::timeout(Duration::from_secs(8), task).await {
                Ok(Ok(Ok(p))) => Outcome::Ok(p.index.0),
                // Rejected before it was written: definitely not committed.
                Ok(Ok(Err(Error::NotLeader { .. }))) => Outcome::Fail,
                // Timed out, the node died, or the entry was discarded: unknown.
                _ => Outcome::Info,
            }
        }
    }

    /// Proposes `value` on replica `i` and classifies the outcome.
    pub async fn propose(&self, i: usize, value: Vec<u8>) -> Outcome {
        self.proposal(i, value).await
    }

    /// Waits until every replica is up and has applied the same, highest, index.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let ms: Vec<_> = (0..self.len())
                .map(|i| self.group(i).map(|g| g.metrics()))
                .collect();
            if ms.iter().all(Option::is_some) {
                let ms: Vec<_> = ms.into_iter().flatten().collect();
                let top = ms.iter().filter_map(|m| m.last_log).max();
                if ms.iter().any(|m| m.role == Role::Leader)
                    && ms.iter().all(|m| m.applied.is_some() && m.applied == top)
                {
                    return Ok(());
                }
                last = format!(
                    "{:?}",
                    ms.iter()
                        .map(|m| (m.role, m.term.0, m.last_log, m.applied))
                        .collect::<Vec<_>>()
                );
            } else {
                last = "a replica is not running".into();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("replicas did not converge: {last}"))
    }

    /// Each replica's applied sequence.
    pub fn states(&self) -> Vec<Vec<(u64, Vec<u8>)>> {
        (0..self.len())
            .map(|i| {
                self.group(i)
                    .map(|g| g.with_app(|a| a.app.0.clone()))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Startup failures seen so far.
    pub fn start_errors(&self) -> Vec<String> {
        self.start_errors.lock().unwrap().clone()
    }

    /// Unsynced writes lost in crashes, over all replicas.
    pub fn lost_writes(&self) -> u64 {
        self.nodes.lost_writes()
    }
}

/// The nemesis' moves in [`chaos`].
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillAny,
    IsolateLeader,
    PowerLossAll,
    /// A bit flips on one follower's disk (a minority); the follower must refuse to start and
    /// is replaced through a membership change.
    BitFlip,
}

/// Replaces damaged replica `i` the way Raft allows: the leader removes its old id, its disk
/// is emptied, it starts as a replacement under `new_id`, and the leader adds it back as a
/// learner and, once caught up, as a voter.
async fn replace(
    cluster: &Arc<tokio::sync::Mutex<RaftCluster>>,
    i: usize,
    new_id: u64,
) -> Result<(), String> {
    let old_id = cluster.lock().await.node_id(i);
    let on_leader = |step: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no leader");
        while tokio::time::Instant::now() < deadline {
            let g = {
                let c = cluster.lock().await;
                c.leader().and_then(|l| c.group(l))
            };
            if let Some(g) = g {
                let r = match step {
                    "remove" => {
                        tokio::time::timeout(Duration::from_secs(5), g.remove_member(old_id)).await
                    }
                    _ => {
                        tokio::time::timeout(Duration::from_secs(10), g.add_member(new_id, addr(i)))
                            .await
                    }
                };
                match r {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "timed out".into(),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("{step} of node {old_id}/{new_id}: {last}"))
    };
    on_leader("remove").await?;
    {
        let mut c = cluster.lock().await;
        c.kill(i);
        c.wipe_for_replacement(i, new_id)
            .await
            .map_err(|e| format!("wiping n{}: {e}", i + 1))?;
        c.restart(i, false);
    }
    on_leader("add").await
}

/// The chaos scenario of the foundation issue: clients propose while the nemesis kills and
/// restarts the leader (process crash or power loss), kills any replica, isolates the leader,
/// and takes power from every replica at once. Then everything heals; there must be a leader, a
/// probe proposal must commit, the replicas must converge, and the checker must find nothing.
pub async fn chaos(seed: u64) -> RunResult {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let cluster = Arc::new(tokio::sync::Mutex::new(RaftCluster::new(3)));
    let history: Arc<Mutex<Vec<Proposal>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let c = cluster.lock().await;
        c.wait_leader(Duration::from_secs(10))
            .await
            .ok_or_else(|| format!("no initial leader; start errors: {:?}", c.start_errors()))?;
    }

    // Clients: three sequential proposers aiming at whoever they think leads.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for p in 0..3u64 {
        let (cluster, history, stop) = (cluster.clone(), history.clone(), stop.clone());
        let mut crng = SmallRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(p));
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let value = format!("p{p}-{n}").into_bytes();
                n += 1;
                let target = {
                    let c = cluster.lock().await;
                    c.leader().unwrap_or_else(|| crng.random_range(0..c.len()))
                };
                let proposal = cluster.lock().await.proposal(target, value.clone());
                let outcome = proposal.await;
                history.lock().unwrap().push(Proposal { value, outcome });
                tokio::time::sleep(Duration::from_millis(crng.random_range(1..20))).await;
            }
        }));
    }

    // Nemesis.
    let faults = [
        Fault::KillLeader,
        Fault::KillAny,
        Fault::IsolateLeader,
        Fault::PowerLossAll,
        Fault::BitFlip,
    ];
    let mut next_id = 10u64;
    let rounds = rng.random_range(4..10);
    let mut log = Vec::new();
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2000))).await;
        let fault = faults[rng.random_range(0..faults.len())];
        let down = Duration::from_millis(rng.random_range(100..2500));
        let mut c = cluster.lock().await;
        let leader = c.leader();
        match fault {
            Fault::KillLeader | Fault::KillAny => {
                let i = match (fault, leader) {
                    (Fault::KillLeader, Some(l)) => l,
                    _ => rng.random_range(0..c.len()),
                };
                let power = rng.random::<bool>();
                c.kill(i);
                drop(c);
                tokio::time::sleep(down).await;
                cluster.lock().await.restart(i, power);
                log.push(format!(
                    "{fault:?} n{} power_loss={power} down={down:?}",
                    i + 1
                ));
            }
            Fault::IsolateLeader => {
                let i = leader.unwrap_or_else(|| rng.random_range(0..c.len()));
                c.isolate(i);
                drop(c);
                tokio::time::sleep(down).await;
                cluster.lock().await.heal(i);
                log.push(format!("isolate n{} for {down:?}", i + 1));
            }
            Fault::BitFlip => {
                let Some(l) = leader else {
                    log.push("bit flip skipped: no leader".into());
                    continue;
                };
                let i = (l + 1 + rng.random_range(0..c.len() - 1)) % c.len();
                if c.group(i).is_none() {
                    log.push(format!("bit flip skipped: n{} is down", i + 1));
                    continue;
                }
                c.kill(i);
                let Some(spot) = c.flip_bit_in_sealed_segment(i, &mut rng).await else {
                    c.restart(i, false);
                    log.push(format!(
                        "bit flip skipped: n{} has no sealed segment",
                        i + 1
                    ));
                    continue;
                };
                c.restart(i, false);
                drop(c);
                tokio::time::sleep(Duration::from_millis(300)).await;
                let refused = cluster.lock().await.take_start_errors(i);
                if refused.is_empty() {
                    return Err(format!(
                        "n{} started although its log was damaged ({spot}); faults: {log:?}",
                        i + 1
                    ));
                }
                next_id += 1;
                replace(&cluster, i, next_id)
                    .await
                    .map_err(|e| format!("replacing n{} failed: {e}; faults: {log:?}", i + 1))?;
                log.push(format!(
                    "bit flip on n{} ({spot}): refused to start, replaced as node {next_id}",
                    i + 1
                ));
            }
            Fault::PowerLossAll => {
                for i in 0..c.len() {
                    c.kill(i);
                }
                drop(c);
                tokio::time::sleep(down).await;
                let mut c = cluster.lock().await;
                for i in 0..c.len() {
                    c.restart(i, true);
                }
                log.push(format!("power loss on all for {down:?}"));
            }
        }
    }

    // Heal, then liveness: a leader, a probe commit, convergence.
    stop.store(true, Ordering::SeqCst);
    for t in clients {
        let _ = t.await;
    }
    let c = cluster.lock().await;
    let errors = c.start_errors();
    if !errors.is_empty() {
        return Err(format!(
            "replica failed to restart from its own disk: {errors:?}; faults: {log:?}"
        ));
    }
    let leader = c
        .wait_leader(Duration::from_secs(10))
        .await
        .ok_or_else(|| format!("no leader after healing; faults: {log:?}"))?;
    let mut probe = Outcome::Info;
    for _ in 0..20 {
        let l = c.leader().unwrap_or(leader);
        probe = c.propose(l, b"probe".to_vec()).await;
        if matches!(probe, Outcome::Ok(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !matches!(probe, Outcome::Ok(_)) {
        let ms: Vec<_> = (0..c.len())
            .map(|i| c.group(i).map(|g| g.metrics()))
            .collect();
        return Err(format!(
            "probe proposal did not commit after healing ({probe:?}); replicas: {ms:?}; faults: {log:?}"
        ));
    }
    c.wait_converged(Duration::from_secs(20))
        .await
        .map_err(|e| format!("{e}; faults: {log:?}"))?;

    let mut history = history.lock().unwrap().clone();
    history.push(Proposal {
        value: b"probe".to_vec(),
        outcome: probe,
    });
    let violations = checker::check(&history, &c.states());
    if !violations.is_empty() {
        return Err(format!(
            "{} violations, first: {:?}; faults: {log:?}",
            violations.len(),
            &violations[..violations.len().min(5)]
        ));
    }
    let acked = history
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Ok(_)))
        .count();
    let unknown = history
        .iter()
        .filter(|p| p.outcome == Outcome::Info)
        .count();
    let lost_writes = c.lost_writes();
    let replaced = log.iter().filter(|l| l.starts_with("bit flip on")).count();
    Ok(format!(
        "{acked} acked, {unknown} unknown of {} proposals; {} faults ({replaced} damaged replicas replaced); {lost_writes} unsynced writes lost in crashes",
        history.len(),
        log.len()
    ))
}
