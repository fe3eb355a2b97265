//! A bare Raft group on simulated nodes and disks: `n` replicas of a trivial recording state
//! machine ([`Recorder`]), each on its own madsim node (10.0.0.1, .2, ...) with a [`SimDisk`]
//! the harness owns, so a kill followed by a restart is either a process crash (unsynced writes
//! survive in the page cache) or a power loss (they are lost, possibly torn). Proposals are
//! handed to a task on the chosen replica's node, as a co-located broker would hand them, so a
//! proposal in flight when its node dies has an unknown outcome.
//!
//! [`SimDisk`]: raft_store::disk::SimDisk

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
use rand::rngs::SmallRng;

use super::Cluster;
use super::nodes;
use super::nodes::Nodes;
use crate::history::Outcome;
use crate::recorder::Recorder;

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
    /// Whether a slot's next start checks every sealed segment (set by a bit flip; see
    /// [`RaftCluster::flip_bit_in_sealed_segment`]).
    verify_next_start: Vec<Arc<AtomicBool>>,
}

/// Replica `i`'s Raft address.
pub fn addr(i: usize) -> String {
    format!("{}:5000", nodes::ip(i))
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
        let verify_next_start: Vec<Arc<AtomicBool>> =
            (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let (id_of, join_of) = (ids.clone(), joining.clone());
        let verify_of = verify_next_start.clone();
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
            let verify = verify_of[i].swap(false, Ordering::SeqCst);
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
                cfg.log.verify_sealed_on_open = verify;
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
            verify_next_start,
        }
    }

    /// Flips one bit inside the first sealed log segment of replica `i` (media corruption that
    /// recovery must detect, not mistake for a torn tail). The replica must be down. Returns
    /// the damaged spot, or `None` if the replica has no sealed segment yet.
    ///
    /// The replica's next start checks every sealed segment (`verify_sealed_on_open`): by
    /// default a sealed segment opens from its summary and damage inside it is found when the
    /// entry is read (raft-store's `recovery` tests), which a nemesis cannot count on here.
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
        let flipped = disk.flip_bit(&path, offset, bit);
        self.verify_next_start[i].store(flipped, Ordering::SeqCst);
        flipped.then(|| format!("{}@{offset} bit {bit}", path.display()))
    }

    /// Startup failures of replica `i`, removed from the list (they were expected).
    pub fn take_start_errors(&self, i: usize) -> Vec<String> {
        nodes::take_errors_of(&self.start_errors, i)
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

impl Cluster for RaftCluster {
    fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    fn nodes_mut(&mut self) -> &mut Nodes {
        &mut self.nodes
    }

    fn leader(&self) -> Option<usize> {
        RaftCluster::leader(self)
    }

    /// Also forgets the dead incarnation's group at once: until the restarted node's boot task
    /// runs, [`RaftCluster::group`] must not hand it out.
    fn kill(&mut self, i: usize) {
        self.nodes.kill(i);
        *self.slots[i].lock().unwrap() = None;
    }
}
