//! A nameserver and broker nodes on simulated nodes and disks: each broker runs the real node
//! runner (replicas, forwarding, registration, preferred leaders) and hosts every one of the
//! cluster's Raft groups, with preferred leaders spread over the nodes. Clients run on a
//! separate client node ([`client_node`]) and find the brokers through the nameserver.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::config::GroupPlan;
use broker::config::NodeConfig;
use broker::core::BrokerCore;
use broker::core::BrokerSettings;
use broker::core::NodeAddrs;
use broker::node::Node;
use madsim::runtime::Handle;
use madsim::runtime::NodeHandle;
use raft_store::disk::Disk;
use raft_store::group::Role;
use raft_store::log::FlushMode;
use raft_store::log::frame;
use rand::RngExt;
use rand::rngs::SmallRng;

use super::Cluster;
use super::nodes;
use super::nodes::Nodes;

/// The nameserver's address.
pub const NAMESERVER: &str = "10.0.0.10:9876";

/// The simulated broker cluster: `n` broker nodes and a nameserver.
pub struct BrokerCluster {
    /// The broker nodes.
    pub nodes: Nodes,
    cores: Vec<Arc<Mutex<Option<Arc<BrokerCore>>>>>,
    start_errors: Arc<Mutex<Vec<String>>>,
    groups: u64,
    /// Whether a node's next start checks every sealed segment (set by a bit flip; see
    /// [`BrokerCluster::flip_before_last_frame`]).
    verify_next_start: Vec<Arc<AtomicBool>>,
    /// Whether a node was replaced: from then on its empty groups wait to be added
    /// (`BrokerSettings::rejoin`, what `raftmq broker --rejoin` sets) instead of bootstrapping.
    rejoin: Vec<Arc<AtomicBool>>,
}

fn raft_addr(i: usize) -> String {
    format!("{}:5000", nodes::ip(i))
}

/// Node `i`'s v2 endpoint.
pub fn v2_addr(i: usize) -> String {
    format!("{}:8081", nodes::ip(i))
}

fn node_config(i: usize, n: usize, groups: u64) -> NodeConfig {
    let peers: BTreeMap<u64, NodeAddrs> = (0..n)
        .map(|j| {
            (
                j as u64 + 1,
                NodeAddrs {
                    raft: raft_addr(j),
                    client: v2_addr(j),
                },
            )
        })
        .collect();
    NodeConfig {
        node_id: i as u64 + 1,
        data_dir: "/data".into(),
        listen: v2_addr(i).parse().unwrap(),
        raft_listen: raft_addr(i).parse().unwrap(),
        peers,
        // Preferred leaders spread over the nodes.
        groups: (1..=groups)
            .map(|g| GroupPlan {
                id: g,
                name: format!("raftmq-g{g}"),
                members: (1..=n as u64).collect(),
                preferred_leader: Some((g - 1) % n as u64 + 1),
            })
            .collect(),
        nameservers: vec![NAMESERVER.into()],
        register_interval: Duration::from_secs(1),
        flush: FlushMode::Sync,
        heartbeat: Duration::from_millis(50),
        election: (Duration::from_millis(200), Duration::from_millis(400)),
        shutdown_drain: Duration::from_millis(500),
        preferred_leader_check: Duration::from_secs(2),
        broker: BrokerSettings {
            leader_wait: Duration::from_secs(2),
            default_queues: 4,
            ..BrokerSettings::default()
        },
        cluster_key: raftmq_proto::auth::ClusterKey::insecure_for_tests(),
    }
}

/// Entries between snapshots for a seed: 20–400 for most seeds (a restart then restores
/// the consume queues from their checkpointed files and replays a short tail), the broker's
/// default for one seed in four. From its own random stream, so the rest of a seed's schedule
/// does not change.
pub fn snapshot_every_for(seed: u64) -> u64 {
    use rand::SeedableRng;
    let mut r = rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5a4_5e00);
    if r.random_bool(0.25) {
        broker::config::DEFAULT_SNAPSHOT_EVERY
    } else {
        r.random_range(20..=400)
    }
}

impl BrokerCluster {
    /// Boots a nameserver and `n` broker nodes hosting `groups` groups of `n` replicas.
    pub fn new(n: usize, groups: u64) -> Self {
        Self::with_settings(n, groups, BrokerSettings::default())
    }

    /// [`BrokerCluster::new`] with every node's broker settings taken from `base` (the
    /// simulation's timing — leader wait, queues — still applies).
    pub fn with_settings(n: usize, groups: u64, base: BrokerSettings) -> Self {
        Handle::current()
            .create_node()
            .name("nameserver")
            .ip("10.0.0.10".parse().unwrap())
            .init(|| async {
                let _ = nameserver::run(
                    NAMESERVER.parse().unwrap(),
                    Duration::from_secs(3),
                    raftmq_proto::auth::ClusterKey::insecure_for_tests(),
                    std::future::pending(),
                )
                .await;
            })
            .build();
        let start_errors = Arc::new(Mutex::new(Vec::new()));
        let cores: Vec<_> = (0..n).map(|_| Arc::new(Mutex::new(None))).collect();
        let (errs, slots) = (start_errors.clone(), cores.clone());
        let verify_next_start: Vec<Arc<AtomicBool>> =
            (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let verify_of = verify_next_start.clone();
        let rejoin: Vec<Arc<AtomicBool>> =
            (0..n).map(|_| Arc::new(AtomicBool::new(false))).collect();
        let rejoin_of = rejoin.clone();
        let faults = raft_store::disk::SimDiskFaults {
            sync_latency: (Duration::from_micros(200), Duration::from_millis(4)),
            ..Default::default()
        };
        let nodes = Nodes::new(n, faults, move |i, disk| {
            let (errs, slot) = (errs.clone(), slots[i].clone());
            let base = base.clone();
            let verify = verify_of[i].swap(false, Ordering::SeqCst);
            let rejoin = rejoin_of[i].load(Ordering::SeqCst);
            async move {
                *slot.lock().unwrap() = None;
                let mut cfg = node_config(i, n, groups);
                cfg.broker = BrokerSettings {
                    leader_wait: cfg.broker.leader_wait,
                    default_queues: cfg.broker.default_queues,
                    auto_create: true,
                    verify_log_on_start: verify,
                    rejoin,
                    ..base
                };
                match Node::start(cfg, Arc::new(disk)).await {
                    Ok(node) => {
                        *slot.lock().unwrap() = Some(node.core().clone());
                        std::future::pending::<()>().await;
                        drop(node);
                    }
                    Err(e) => errs
                        .lock()
                        .unwrap()
                        .push(format!("n{} failed to start: {e}", i + 1)),
                }
            }
        });
        BrokerCluster {
            nodes,
            cores,
            start_errors,
            groups,
            verify_next_start,
            rejoin,
        }
    }

    /// Empties node `i`'s disk (it must be down), as a replaced disk would be, and makes every
    /// later start of it wait to be added to its groups (`--rejoin`).
    pub async fn wipe_for_rejoin(&self, i: usize) -> std::io::Result<()> {
        for g in 1..=self.groups {
            self.wipe_group_for_rejoin(i, g).await?;
        }
        Ok(())
    }

    /// Empties one group's log and state on node `i` (down) and has it start with `--rejoin`:
    /// what `replica add` asks for when retention has overtaken the node's copy.
    pub async fn wipe_group_for_rejoin(&self, i: usize, g: u64) -> std::io::Result<()> {
        let disk = self.nodes.disk(i).clone();
        for sub in ["log", "sm"] {
            let dir = std::path::PathBuf::from(format!("/data/group-{g}/{sub}"));
            let Ok(names) = disk.list(&dir) else { continue };
            for n in names {
                disk.remove(&dir.join(n))?;
            }
            disk.sync_dir(&dir).await?;
        }
        self.rejoin[i].store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Node `i`'s Raft address.
    pub fn raft_addr(&self, i: usize) -> String {
        raft_addr(i)
    }

    /// Node `i`'s broker core, if it is up.
    pub fn core(&self, i: usize) -> Option<Arc<BrokerCore>> {
        if !self.nodes.is_alive(i) {
            return None;
        }
        self.cores[i].lock().unwrap().clone()
    }

    /// The node leading group `g` with the highest term.
    pub fn leader_of(&self, g: u64) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let core = self.core(i)?;
                let m = core.group(g).ok()?.replica.metrics();
                (m.role == Role::Leader).then_some((i, m.term))
            })
            .max_by_key(|(_, t)| *t)
            .map(|(i, _)| i)
    }

    /// The node leading the most groups (the nemesis' "leader").
    pub fn leader(&self) -> Option<usize> {
        let mut count: BTreeMap<usize, u32> = BTreeMap::new();
        for g in 1..=self.groups {
            if let Some(i) = self.leader_of(g) {
                *count.entry(i).or_default() += 1;
            }
        }
        count
            .into_iter()
            .max_by_key(|(i, c)| (*c, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    }

    /// True if every group has a leader.
    pub fn all_led(&self) -> bool {
        (1..=self.groups).all(|g| self.leader_of(g).is_some())
    }

    /// Startup failures.
    pub fn start_errors(&self) -> Vec<String> {
        self.start_errors.lock().unwrap().clone()
    }

    /// Startup failures of node `i`, removed from the list (they were expected).
    pub fn take_start_errors(&self, i: usize) -> Vec<String> {
        nodes::take_errors_of(&self.start_errors, i)
    }

    /// Number of Raft groups.
    pub fn groups(&self) -> u64 {
        self.groups
    }

    /// True if node `i` is up but one of its replicas stopped (its storage failed; replicas
    /// never retry an fsync, so only a restart brings them back).
    pub fn has_stopped_replica(&self, i: usize) -> bool {
        self.core(i).is_some_and(|core| {
            (1..=self.groups).any(|g| {
                core.group(g)
                    .is_ok_and(|h| h.replica.metrics().role == Role::Stopped)
            })
        })
    }

    /// Damages the state of node `i` (down), not its log: removes the first consume-queue
    /// file of the first group that has one, else flips a bit inside a group's snapshot. Its
    /// next start must repair the state (raft-store's repair) and take part again. No random
    /// draw: the nemesis' stream stays as it was. Returns what was damaged, if anything.
    pub fn damage_state(&self, i: usize) -> Option<String> {
        let disk = self.nodes.disk(i);
        let sorted = |dir: &std::path::Path, ext: &str| {
            let mut names: Vec<String> = disk
                .list(dir)
                .unwrap_or_default()
                .into_iter()
                .filter(|n| n.ends_with(ext))
                .collect();
            names.sort();
            names
        };
        for g in 1..=self.groups {
            let cq = std::path::PathBuf::from(format!("/data/group-{g}/cq"));
            // Chunk files: `.cqg`, or `.cq` written by an older layout.
            if let Some(name) = sorted(&cq, ".cqg").first() {
                let path = cq.join(name);
                disk.remove(&path).ok()?;
                return Some(format!("removed {}", path.display()));
            }
        }
        for g in 1..=self.groups {
            let sm = std::path::PathBuf::from(format!("/data/group-{g}/sm"));
            if sorted(&sm, "snapshot").iter().any(|n| n == "snapshot") {
                let path = sm.join("snapshot");
                let len = disk.open(&path).ok()?.len().ok()?;
                if len > 16 && disk.flip_bit(&path, len / 2, 3) {
                    return Some(format!("{}@{} bit 3", path.display(), len / 2));
                }
            }
        }
        None
    }

    /// Flips one bit in a log segment of one of node `i`'s groups, somewhere before the
    /// segment's last frame, so valid data follows the damage and recovery must refuse it (a
    /// flip in the last frame is indistinguishable from a torn write; docs/guarantees.md). The
    /// node must be down. Returns the damaged spot, or `None` if there is no such frame yet.
    /// The node's next start checks every sealed segment (`verify_log_on_start`): by default a
    /// sealed segment opens from its summary and damage inside it is found when the entry is
    /// read (raft-store's `recovery` tests), which a nemesis cannot count on here.
    pub fn flip_before_last_frame(&self, i: usize, rng: &mut SmallRng) -> Option<String> {
        let disk = self.nodes.disk(i);
        let g = rng.random_range(1..=self.groups);
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
        let flipped = disk.flip_bit(&path, offset, bit);
        self.verify_next_start[i].store(flipped, Ordering::SeqCst);
        flipped.then(|| format!("{}@{offset} bit {bit}", path.display()))
    }
}

impl Cluster for BrokerCluster {
    fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    fn nodes_mut(&mut self) -> &mut Nodes {
        &mut self.nodes
    }

    fn leader(&self) -> Option<usize> {
        BrokerCluster::leader(self)
    }
}

/// Creates the node the clients run on (10.0.0.100), apart from every broker so no fault
/// aimed at a broker hits a client.
pub fn client_node() -> NodeHandle {
    Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.0.100".parse().unwrap())
        .build()
}

/// Waits until every group of `cluster` has a leader, polling every 50 ms for up to
/// `timeout`; false if some group is still leaderless then.
pub async fn wait_all_led(cluster: &tokio::sync::Mutex<BrokerCluster>, timeout: Duration) -> bool {
    let polls = timeout.as_millis() / 50;
    for _ in 0..polls {
        if cluster.lock().await.all_led() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
