//! One replica of one Raft group: start it with a caller's state machine, propose to it,
//! observe it, and stop it (handing leadership over first).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::ServerState;
use openraft::SnapshotPolicy;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::errors::ForwardReason;
use openraft::errors::RaftError;

use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::fence;
use crate::fence::Acked;
use crate::fence::Fence;
use crate::fence::Gate;
use crate::log::LogConfig;
use crate::log::LogStore;
use crate::log::RecoveryReport;
use crate::network;
use crate::network::Channels;
use crate::network::NetConfig;
use crate::network::NetworkFactory;
use crate::server::Hosted;
use crate::server::Registry;
use crate::state_machine::App;
use crate::state_machine::Applied;
use crate::state_machine::StateMachineStore;
use crate::types::GroupId;
use crate::types::LogIndex;
use crate::types::Node;
use crate::types::NodeId;
use crate::types::Raft;
use crate::types::Request;
use crate::types::Term;

/// Everything needed to run one replica.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group this replica belongs to.
    pub group: GroupId,
    /// This node's id; must be one of `members`.
    pub node_id: NodeId,
    /// The group's initial voters and their Raft transport addresses (`host:port`).
    pub members: BTreeMap<NodeId, String>,
    /// Where this replica keeps its data (`log/` and `sm/` inside).
    pub data_dir: PathBuf,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Election timeout range (randomized per election).
    pub election_timeout: (Duration, Duration),
    /// Take a state-machine snapshot after this many applied entries.
    pub snapshot_every: u64,
    /// Entries to keep behind a snapshot before purging the log; `None` never purges (for the
    /// broker the log *is* the message store, and retention is separate).
    pub purge_keep: Option<u64>,
    /// How long [`Group::propose`] waits for the commit before reporting an unknown outcome.
    pub propose_timeout: Duration,
    /// Log storage tuning.
    pub log: LogConfig,
    /// Transport tuning.
    pub net: NetConfig,
    /// A replacement replica: it never bootstraps the group, even with an empty log, and its
    /// `node_id` need not be among `members`. It waits until a leader adds it with
    /// [`Group::add_member`]. Give a replacement a node id the group has never used: a replica
    /// that lost its disk also lost its vote, and must not vote again under its old id.
    pub join: bool,
    /// Directories inside `data_dir` holding application files a snapshot refers to (the
    /// broker's consume queues): a rejoining replica copies them with the snapshot and the
    /// retained log ([`crate::seed`]).
    pub seed_dirs: Vec<String>,
}

impl GroupConfig {
    /// A configuration with the defaults for sub-second failover on a healthy network.
    pub fn new(
        group: GroupId,
        node_id: NodeId,
        members: BTreeMap<NodeId, String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            group,
            node_id,
            members,
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
            snapshot_every: 10_000,
            purge_keep: None,
            propose_timeout: Duration::from_secs(5),
            log: LogConfig::default(),
            net: NetConfig::default(),
            join: false,
            seed_dirs: Vec::new(),
        }
    }

    /// Checks the configuration, with a message naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if !self.join && !self.members.contains_key(&self.node_id) {
            return Err(Error::Config(format!(
                "group {}: node {} is not among the members {:?}",
                self.group,
                self.node_id,
                self.members.keys().collect::<Vec<_>>()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (id, addr) in &self.members {
            if !seen.insert(addr) {
                return Err(Error::Config(format!(
                    "group {}: two members share the address {addr:?}",
                    self.group
                )));
            }
            if addr
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                return Err(Error::Config(format!(
                    "group {}: member {id} has a bad address {addr:?} (want host:port)",
                    self.group
                )));
            }
        }
        let (lo, hi) = self.election_timeout;
        if self.heartbeat_interval.is_zero() || lo <= self.heartbeat_interval * 2 || hi <= lo {
            return Err(Error::Config(format!(
                "group {}: need 0 < 2*heartbeat ({:?}) < election_timeout_min ({lo:?}) < election_timeout_max ({hi:?})",
                self.group, self.heartbeat_interval
            )));
        }
        if self.snapshot_every == 0 {
            return Err(Error::Config("snapshot_every must be positive".into()));
        }
        self.log.validate()
    }

    fn raft_config(&self) -> Result<openraft::Config> {
        let ms = |d: Duration| d.as_millis() as u64;
        let cfg = openraft::Config {
            cluster_name: format!("raftmq-group-{}", self.group),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            enable_pre_vote: Some(true),
            enable_leader_restore: Some(false),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.purge_keep.unwrap_or(u64::MAX / 2),
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        cfg.validate().map_err(|e| Error::Config(e.to_string()))
    }
}

/// A replica's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Leads the group: accepts proposals.
    Leader,
    /// Follows a leader.
    Follower,
    /// Campaigning.
    Candidate,
    /// Replicates but does not vote.
    Learner,
    /// Stopped (shut down, or failed on a fatal storage error).
    Stopped,
}

/// A snapshot of a replica's Raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetrics {
    /// Group id.
    pub group: GroupId,
    /// This node.
    pub node: NodeId,
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// The leader this replica knows of.
    pub leader: Option<NodeId>,
    /// Last entry in the local log.
    pub last_log: Option<LogIndex>,
    /// Highest entry known committed.
    pub committed: Option<LogIndex>,
    /// Highest entry applied to the state machine.
    pub applied: Option<LogIndex>,
    /// Current voters.
    pub voters: BTreeSet<NodeId>,
    /// Current learners (replicated to, not voting: a replica being added).
    pub learners: BTreeSet<NodeId>,
    /// On a leader: the last entry each follower has, as far as the leader knows.
    pub replication: BTreeMap<NodeId, Option<LogIndex>>,
    /// The last entry in the latest state-machine snapshot.
    pub snapshot: Option<LogIndex>,
    /// The last entry purged from the local log.
    pub purged: Option<LogIndex>,
    /// On a leader: the followers and learners that acknowledged a heartbeat or an append
    /// within the longest election timeout (the ones it is in contact with).
    pub in_contact: BTreeSet<NodeId>,
}

/// The outcome of a committed proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposed {
    /// Where it sits in the log.
    pub index: LogIndex,
    /// The state machine's answer.
    pub response: Vec<u8>,
}

/// A running replica; see the module docs.
pub struct Group<A: App> {
    cfg: GroupConfig,
    raft: Raft<StateMachineStore<A>>,
    sm: StateMachineStore<A>,
    log: LogStore,
    registry: Registry,
    recovery: RecoveryReport,
    fence: Arc<Fence>,
    channels: Channels,
    /// The fence's tasks (recording acknowledging members; a pristine replica's probes).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<A: App> Group<A> {
    /// Opens (recovering) or creates the replica's storage, starts Raft and registers it with
    /// the process's transport `registry`. A brand-new group is bootstrapped with `members`.
    pub async fn start(
        cfg: GroupConfig,
        disk: Arc<dyn Disk>,
        app: A,
        registry: &Registry,
        channels: &Channels,
    ) -> Result<Self> {
        cfg.validate()?;
        let raft_cfg = Arc::new(cfg.raft_config()?);
        let (log, recovery) =
            LogStore::open(disk.clone(), cfg.data_dir.join("log"), cfg.log.clone()).await?;
        let acked = Acked::load(disk.clone(), &cfg.data_dir)?;
        let sm = StateMachineStore::open(disk.clone(), cfg.data_dir.join("sm"), app).await?;
        // A copy from a peer (crate::seed) is complete once its log and state have opened.
        crate::seed::settle(&cfg, &*disk).await?;
        // So is a repair of the state (crate::repair): the state it rebuilt has opened.
        crate::repair::settle(&cfg, &*disk).await?;
        let network =
            NetworkFactory::new(cfg.group, cfg.node_id, channels.clone(), cfg.net.clone());
        let raft = openraft::Raft::new(cfg.node_id, raft_cfg, network, log.clone(), sm.clone())
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        // An empty log may be a new group, a late first start, or a replica that lost its
        // data: it asks its peers before it takes part (crate::fence).
        let pristine = recovery.last_log_id.is_none();
        let fence = Arc::new(Fence::new(!pristine, acked));
        registry.register(
            cfg.group,
            Arc::new(Hosted {
                raft: raft.clone(),
                fence: fence.clone(),
                group: cfg.group,
                node: cfg.node_id,
                seed: Arc::new(crate::seed::SeedSource {
                    log: log.clone(),
                    disk: disk.clone(),
                    data_dir: cfg.data_dir.clone(),
                    dirs: cfg.seed_dirs.clone(),
                    snapshots: sm.snapshot_lock(),
                }),
            }),
        );
        let mut tasks = vec![tokio::spawn(crate::probe::record_acks(
            raft.clone(),
            fence.clone(),
        ))];
        if pristine {
            tasks.push(tokio::spawn(crate::probe::probe_peers(
                cfg.clone(),
                channels.clone(),
                raft.clone(),
                fence.clone(),
            )));
        }
        tracing::info!(
            group = %cfg.group,
            node = cfg.node_id,
            last_log = ?recovery.last_log_id,
            torn_bytes = recovery.torn_bytes,
            "replica started"
        );
        Ok(Group {
            cfg,
            raft,
            sm,
            log,
            registry: registry.clone(),
            recovery,
            fence,
            channels: channels.clone(),
            tasks,
        })
    }

    /// Why the replica stopped taking part, if it did: a storage failure, or the fence
    /// refused it (it lost its data; the reason says how to rejoin).
    pub fn stopped_reason(&self) -> Option<String> {
        if let Gate::Refused(why) = self.fence.gate() {
            return Some(format!("because it lost its data: {why}"));
        }
        // Only damage ends the process: its restart repairs the state. An entry this binary
        // cannot interpret (a newer version's) fails again after any restart, so the replica
        // stays stopped (metrics: Stopped) and the node's other groups keep serving.
        if let Some((e, true)) = self.sm.failure() {
            return Some(format!(
                "because its state machine failed ({e}); exiting so that it restarts (a damaged \
                 state is rebuilt at the restart)"
            ));
        }
        self.log.fatal_error().map(|e| {
            format!(
                "after a storage failure ({e}); exiting so that it restarts and recovers from \
                 its disk"
            )
        })
    }

    /// The configuration this replica runs with.
    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    /// What recovery found when the replica started.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The openraft handle (for linearizable reads, membership changes, triggers).
    pub fn raft(&self) -> &Raft<StateMachineStore<A>> {
        &self.raft
    }

    /// The log store (for reading committed entries directly).
    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// Runs `f` on the applied state (briefly; never across an await).
    pub fn with_app<T>(&self, f: impl FnOnce(&Applied<A>) -> T) -> T {
        self.sm.with(f)
    }

    /// Proposes `data` and waits until it is committed by a majority (each of which fsynced
    /// it) and applied here. A timeout means the outcome is unknown: it may still commit.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Proposed> {
        let timeout = self.cfg.propose_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.raft.client_write(Request(data.clone()))).await {
                Err(_) => return Err(Error::Timeout(timeout)),
                Ok(Ok(resp)) => {
                    return Ok(Proposed {
                        index: LogIndex(resp.log_id.index),
                        response: resp.data.0,
                    });
                }
                // A leader that has not heard from a quorum yet (just elected) or lately (cut
                // off) refuses writes before appending them. Retrying is safe: nothing was
                // written. A new leader confirms its lease within a heartbeat; a cut-off one
                // steps down, and the retry then reports where the leader is.
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))))
                    if f.reason == ForwardReason::LeaseExpired
                        && left > self.cfg.heartbeat_interval =>
                {
                    tokio::time::sleep(self.cfg.heartbeat_interval / 2).await;
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    return Err(Error::NotLeader {
                        leader: f.leader_id,
                        leader_addr: f.leader_node.map(|n| n.addr),
                    });
                }
                Ok(Err(RaftError::Fatal(f))) => return Err(Error::Stopped(f.to_string())),
                Ok(Err(e)) => return Err(Error::Raft(e.to_string())),
            }
        }
    }

    /// Confirms this replica still leads (a quorum answers a heartbeat sent after the call)
    /// and waits until everything committed before the call is applied here (ReadIndex), so
    /// a read of the applied state that follows is linearizable. Errors if it does not lead.
    pub async fn read_index(&self) -> Result<()> {
        let timeout = self.cfg.propose_timeout;
        match tokio::time::timeout(
            timeout,
            self.raft
                .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex),
        )
        .await
        {
            Err(_) => Err(Error::Timeout(timeout)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::Fatal(f))) => Err(Error::Stopped(f.to_string())),
            Ok(Err(e)) => Err(Error::NotLeader {
                leader: self.raft.metrics().borrow_watched().current_leader,
                leader_addr: None,
            })
            .inspect_err(|_| tracing::debug!(error = %e, "read index refused")),
        }
    }

    /// This replica's role alone: what [`Group::metrics`] reports as `role`, without copying
    /// the membership, replication progress and the rest (the send path asks per request).
    pub fn role(&self) -> Role {
        if self.stopped_reason().is_some() {
            return Role::Stopped;
        }
        match self.raft.metrics().borrow_watched().state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Stopped,
        }
    }

    /// The leader this replica knows of, alone (see [`Group::role`]).
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The replica's current Raft state.
    pub fn metrics(&self) -> GroupMetrics {
        let role = self.role();
        let m = self.raft.metrics().borrow_watched().clone();
        GroupMetrics {
            group: self.cfg.group,
            node: self.cfg.node_id,
            role,
            term: Term(m.current_term),
            leader: m.current_leader,
            last_log: m.last_log_index.map(LogIndex),
            committed: m.local_committed.map(|c| LogIndex(c.index)),
            applied: m.last_applied.map(|a| LogIndex(a.index)),
            voters: m.membership_config.membership().voter_ids().collect(),
            learners: m.membership_config.membership().learner_ids().collect(),
            replication: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(n, l)| (*n, l.map(|l| LogIndex(l.index))))
                        .collect()
                })
                .unwrap_or_default(),
            snapshot: m.snapshot.map(|l| LogIndex(l.index)),
            purged: m.purged.map(|l| LogIndex(l.index)),
            in_contact: m
                .heartbeat
                .as_ref()
                .map(|h| {
                    // Called through the trait: in the simulator the instant type also has an
                    // inherent `elapsed`, and both must read the runtime's clock.
                    h.iter()
                        .filter(|(_, t)| {
                            t.as_ref().is_some_and(|t| {
                                openraft_rt::Instant::elapsed(&**t) <= self.cfg.election_timeout.1
                            })
                        })
                        .map(|(n, _)| *n)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Deletes the local log up to `upto` (inclusive), never past the latest snapshot (see
    /// [`Group::snapshot`]); openraft may delay it while replication still reads those entries.
    /// Only for entries no member can need again: a member behind the purge point catches up
    /// from a snapshot, without the entries' data.
    pub async fn purge_log(&self, upto: LogIndex) -> Result<()> {
        self.raft
            .trigger()
            .purge_log(upto.0)
            .await
            .map_err(|e| Error::Stopped(e.to_string()))
    }

    /// Builds a state-machine snapshot now (in the background).
    pub async fn snapshot(&self) -> Result<()> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Stopped(e.to_string()))
    }

    /// The current term (cheaper than [`Group::metrics`]).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// Waits until some leader is known (to this replica), up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let mut rx = self.raft.metrics();
        let fut = async {
            loop {
                if let Some(l) = rx.borrow_watched().current_leader {
                    return Ok(l);
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Stopped("replica stopped".into()));
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    /// If this replica leads, hands leadership to the most caught-up voter and waits (up to
    /// one election timeout) until another leader is known. The replica keeps running as a
    /// follower. Returns whether leadership moved.
    pub async fn step_down(&self) -> bool {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return false;
        }
        let me = self.cfg.node_id;
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        let target = m.replication.as_ref().and_then(|r| {
            r.iter()
                .filter(|(id, _)| **id != me && voters.contains(id))
                .max_by_key(|(id, matched)| (matched.map(|l| l.index), std::cmp::Reverse(**id)))
                .map(|(id, _)| *id)
        });
        let Some(to) = target else { return false };
        tracing::info!(group = %self.cfg.group, node = me, to, "handing leadership over");
        if self.raft.trigger().transfer_leader(to).await.is_err() {
            return false;
        }
        let mut rx = self.raft.metrics();
        let wait = async {
            loop {
                let cur = rx.borrow_watched().current_leader;
                if cur.is_some() && cur != Some(me) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(self.cfg.election_timeout.1, wait)
            .await
            .unwrap_or(false)
    }

    /// Asks this replica to hand leadership to `to` (used to move leadership back to a
    /// preferred node). A no-op unless this replica leads.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<()> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Error::Raft(e.to_string()))
    }

    /// On the leader: removes `node` from the group (voters and learners). The first step of
    /// replacing a replica whose disk was lost or damaged: the group commits with the others
    /// meanwhile, and the old id never votes or counts again.
    pub async fn remove_member(&self, node: NodeId) -> Result<()> {
        let voter = self.metrics().voters.contains(&node);
        // A learner (an addition that never finished) is not a voter to remove: drop the node.
        let change = if voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        Ok(())
    }

    /// Asks `node` (at Raft address `addr`) what it holds of this group: its last log index,
    /// whether it counts itself a voter (see [`crate::fence::ProbeReply`]).
    pub async fn probe_member(
        &self,
        node: NodeId,
        addr: &str,
    ) -> std::result::Result<fence::ProbeReply, String> {
        network::probe(
            &self.channels,
            &self.cfg.net,
            (self.cfg.group, self.cfg.node_id),
            (node, addr),
            self.cfg.election_timeout.1 * 4,
        )
        .await
    }

    /// On the leader: adds `node` (started with [`GroupConfig::join`]) at Raft address `addr`,
    /// first as a learner until it has caught up, then as a voter. Only then does it count
    /// towards commits and elections, so adding it never weakens a quorum. A learner that has
    /// not caught up within `catch_up` (down, unreachable, too slow) is removed again, so it
    /// does not hold retention back, and the addition fails saying so.
    pub async fn add_member(&self, node: NodeId, addr: String, catch_up: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + catch_up;
        // Not openraft's blocking wait: it counts a learner within its replication lag (5,000
        // entries) as caught up, so a node that never answered would become a voter of a
        // young group at once. Here the learner must hold the leader's log as it was when the
        // learner was added.
        self.raft
            .add_learner(node, Node::new(addr), false)
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let target = self.metrics().last_log.map_or(0, |l| l.0);
        loop {
            let m = self.metrics();
            if m.role != Role::Leader {
                // A blip (a lost lease under load, a re-election won again here) is waited
                // out: the learner is in the committed membership and any leader copies the
                // log to it. Another leader, or none by the deadline, ends the wait
                // (tests/replica_replacement.rs failed on such a blip under a loaded CI).
                if m.leader.is_some_and(|l| l != self.cfg.node_id)
                    || tokio::time::Instant::now() >= deadline
                {
                    return Err(Error::NotLeader {
                        leader: m.leader,
                        leader_addr: None,
                    });
                }
                tokio::time::sleep(self.cfg.heartbeat_interval).await;
                continue;
            }
            if m.replication
                .get(&node)
                .is_some_and(|l| l.is_some_and(|l| l.0 >= target))
            {
                break;
            }
            if tokio::time::Instant::now() < deadline {
                tokio::time::sleep(self.cfg.heartbeat_interval).await;
                continue;
            }
            let undo = match tokio::time::timeout(
                self.cfg.propose_timeout,
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node])), false),
            )
            .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no commit within {:?}", self.cfg.propose_timeout)),
            };
            return Err(Error::Raft(match undo {
                Ok(_) => format!(
                    "node {node} did not copy the log within {catch_up:?}, so it was removed \
                     again; check that it runs (with --rejoin) and is reachable, then retry"
                ),
                Err(e) => format!(
                    "node {node} did not copy the log within {catch_up:?}, and removing it \
                     again failed ({e}): remove it with `raftmq admin replica remove`"
                ),
            }));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node])), false)
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        Ok(())
    }

    /// Stops the replica. A leader first hands leadership to the most caught-up voter, so
    /// clients see a short pause rather than an election timeout.
    pub async fn shutdown(&self) -> Result<()> {
        for t in &self.tasks {
            t.abort();
        }
        self.step_down().await;
        self.registry.unregister(self.cfg.group);
        self.raft
            .shutdown()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        Ok(())
    }
}

impl<A: App> Drop for Group<A> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
