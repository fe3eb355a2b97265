//! One replica of one Raft group of the broker: the group, its group commit, reads of messages
//! from the log, and the notification long polls wait on.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use raft_store::disk::Disk;
use raft_store::group::Group;
use raft_store::group::GroupConfig;
use raft_store::group::GroupMetrics;
use raft_store::group::Role;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::types::EntryPayload;
use raft_store::types::GroupId;
use raft_store::types::NodeId;
use tokio::sync::Notify;

use crate::app::BrokerApp;
use crate::batcher::BatchConfig;
use crate::batcher::Batcher;
use crate::clock::ClusterClock;
use crate::command;
use crate::command::Command;
use crate::error::BrokerError;
use crate::error::Result;
use crate::model::MessageHead;
use crate::model::StoredMessage;
use crate::state::BrokerState;
use crate::state::Outcome;
use crate::state::consume_queue::CqEntry;
use crate::state::cq_files::CqFiles;

/// Recently read log entries, so a receive of many messages from one batch reads it once.
struct EntryCache {
    map: BTreeMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<u64>,
    bytes: usize,
    max_bytes: usize,
}

impl EntryCache {
    fn get(&self, index: u64) -> Option<Arc<Vec<u8>>> {
        self.map.get(&index).cloned()
    }

    fn put(&mut self, index: u64, bytes: Arc<Vec<u8>>) {
        if self.map.contains_key(&index) {
            return;
        }
        self.bytes += bytes.len();
        self.map.insert(index, bytes);
        self.order.push_back(index);
        while self.bytes > self.max_bytes && self.order.len() > 1 {
            let old = self.order.pop_front().expect("non-empty");
            if let Some(b) = self.map.remove(&old) {
                self.bytes -= b.len();
            }
        }
    }
}

/// The highest time stamped on the newest entries of `group`'s local log (at most 64, past
/// blank and membership entries).
pub(crate) fn newest_entry_time(group: &Group<BrokerApp>) -> Option<u64> {
    newest_entries(group).map(|(ms, _)| ms)
}

/// The highest stamp among the newest entries of `group`'s log, and the index of its newest
/// broker entry (blank and membership entries carry no time).
fn newest_entries(group: &Group<BrokerApp>) -> Option<(u64, u64)> {
    let (purged, last) = group.log().state();
    let last = last?.index;
    let first = purged
        .map_or(0, |p| p.index + 1)
        .max(last.saturating_sub(63));
    let entries = group.log().read(first..=last).ok()?;
    let stamped: Vec<(u64, u64)> = entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Normal(r) => command::decode_entry(&r.0)
                .ok()
                .map(|d| (d.now_ms, e.log_id.index)),
            _ => None,
        })
        .collect();
    let ms = stamped.iter().map(|(ms, _)| *ms).max()?;
    Some((ms, stamped.last().map_or(0, |(_, i)| *i)))
}

/// The cluster time `group`'s log has reached (the highest of its state's clock and its newest
/// entries' stamps; 0 for an empty log), and the index of its newest broker entry.
pub(crate) fn log_time(group: &Group<BrokerApp>) -> (u64, u64) {
    let state_ms = group.with_app(|a| a.app.state().clock_ms);
    let (ms, index) = newest_entries(group).unwrap_or((0, 0));
    (state_ms.max(ms), index)
}

/// Rebuilds a damaged state (raft-store's repair), saying how.
async fn repair(
    cfg: &GroupConfig,
    disk: &Arc<dyn Disk>,
    channels: &Channels,
    why: &str,
) -> Result<()> {
    match raft_store::repair::repair(cfg, disk.clone(), channels, why).await? {
        raft_store::repair::Repaired::FromLog => tracing::warn!(
            group = %cfg.group,
            "state set aside (sm/snapshot.damaged); the replica applies its whole log again"
        ),
        raft_store::repair::Repaired::FromPeer {
            from,
            snapshot,
            extended_from: None,
            bytes,
        } => tracing::warn!(
            group = %cfg.group,
            from,
            snapshot = %snapshot,
            kib = bytes >> 10,
            "state repaired: copied a peer's snapshot and consume queues; the replica applies \
             its own log after it"
        ),
        raft_store::repair::Repaired::FromPeer {
            from,
            snapshot,
            extended_from: Some(last),
            bytes,
        } => tracing::warn!(
            group = %cfg.group,
            from,
            snapshot = %snapshot,
            kib = bytes >> 10,
            "state repaired: the log, which ended at {last}, was brought up to a peer's \
             snapshot with its entries, and the snapshot and consume queues copied"
        ),
    }
    Ok(())
}

/// The consume queues' directory in a group's data directory.
pub const CQ_DIR: &str = "cq";

/// A running replica; see the module docs.
pub struct Replica {
    group: Arc<Group<BrokerApp>>,
    batcher: Batcher,
    changed: Arc<Notify>,
    clock: Arc<ClusterClock>,
    cache: Mutex<EntryCache>,
    /// Why retention is held back, if it is (`crate::retention`; shown by admin status).
    retention_note: Mutex<String>,
    /// Nodes being added (`replica add`, on the leader), each with the last log index it
    /// holds (0 until known): retention deletes nothing past it until the learner is in the
    /// membership and has acknowledged (sim cluster_chaos 555144: retention purged past a
    /// fresh copy between the addition's check and the learner's first acknowledgement; the
    /// leader then sent a snapshot the replica could not take).
    joining: Mutex<Joining>,
}

/// The holds of nodes being added, and how far this replica has asked its log to be purged.
/// One lock for both: an addition's check and retention's purge request then see each other
/// (review: a purge requested just before a hold, but not run yet, could remove what the
/// checked node needs).
#[derive(Default)]
struct Joining {
    /// (node, hold number) → the last log index the node holds (0 until known). Numbered,
    /// so two additions of one node (a retry while the first still runs) do not end each
    /// other's hold.
    holds: BTreeMap<(NodeId, u64), u64>,
    next_hold: u64,
    /// The highest index retention has asked this replica's log to purge up to.
    purge_requested: u64,
}

/// Why [`Replica::add_replica`] did not add a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddRefusal {
    /// The node lacks log entries this leader no longer has: it must be emptied and started
    /// with `--rejoin` again, to copy a peer's state anew.
    MustCopyAgain(String),
    /// Anything else (not reachable, not caught up in time, leadership lost): retry.
    Failed(String),
}

impl std::fmt::Display for AddRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddRefusal::MustCopyAgain(why) | AddRefusal::Failed(why) => f.write_str(why),
        }
    }
}

/// Holds retention back for a node being added, until dropped ([`Replica::hold_for_joining`]).
struct JoiningHold {
    replica: Arc<Replica>,
    key: (NodeId, u64),
}

impl JoiningHold {
    /// The node's log is now known to end at `last` (its probe's answer).
    fn holds_up_to(&self, last: u64) {
        self.replica
            .joining
            .lock()
            .unwrap()
            .holds
            .insert(self.key, last);
    }
}

impl Drop for JoiningHold {
    fn drop(&mut self) {
        self.replica.joining.lock().unwrap().holds.remove(&self.key);
    }
}

/// A message that does not decode where its queue entry points.
fn corrupt(e: &CqEntry, why: String) -> BrokerError {
    BrokerError::Corrupt(format!(
        "message at entry {} byte {}: {why}",
        e.log_index, e.pos
    ))
}

impl Replica {
    /// Starts (or recovers) the replica described by `cfg`.
    pub async fn start(
        cfg: GroupConfig,
        disk: Arc<dyn Disk>,
        registry: &Registry,
        channels: &Channels,
        batch: BatchConfig,
    ) -> Result<Arc<Replica>> {
        let changed = Arc::new(Notify::new());
        let clock = Arc::new(ClusterClock::new());
        // A replica rejoining with an empty disk first copies a peer's snapshot, consume
        // queues and retained log, when retention has deleted the start of the log.
        match raft_store::seed::seed(&cfg, disk.clone(), channels).await? {
            raft_store::seed::Seeded::NotNeeded => {}
            raft_store::seed::Seeded::Skipped(why) => tracing::warn!(
                group = %cfg.group,
                "rejoining without copying a peer's log first ({why}); if retention has \
                 deleted the start of the group's log, `replica add` will ask for a restart"
            ),
            raft_store::seed::Seeded::Copied {
                from,
                first,
                last,
                bytes,
            } => tracing::warn!(
                group = %cfg.group,
                from,
                first,
                last,
                mib = bytes >> 20,
                "copied the snapshot, consume queues and retained log from a peer"
            ),
        }
        // A replica whose state (snapshot, consume queues) is damaged rebuilds it from its
        // log or a peer's snapshot (raft-store's repair); one whose repair did not finish
        // repairs again before anything opens the half-written state.
        if raft_store::repair::interrupted(&cfg, &*disk)? {
            repair(
                &cfg,
                &disk,
                channels,
                "marked damaged (a read failed while it ran, or a repair did not finish)",
            )
            .await?;
        }
        let cq_dir = cfg.data_dir.join(CQ_DIR);
        let app = || -> Result<BrokerApp> {
            let files = CqFiles::open(disk.clone(), &cq_dir)
                .map_err(|e| BrokerError::Store(raft_store::Error::io(&cq_dir, e)))?;
            Ok(BrokerApp::new(changed.clone(), clock.clone()).with_files(files))
        };
        let group = match Group::start(cfg.clone(), disk.clone(), app()?, registry, channels).await
        {
            Err(e) if let Some(why) = raft_store::repair::damaged_state(&cfg, &e) => {
                repair(&cfg, &disk, channels, &why).await?;
                Group::start(cfg, disk.clone(), app()?, registry, channels).await?
            }
            r => r?,
        };
        let group = Arc::new(group);
        // Anchor cluster time before this replica can stamp anything: a replica that restarts
        // and is elected before it has applied an entry would otherwise stamp its raw wall
        // clock, and a clock running ahead would expire receipts early. The newest entry in the
        // local log carries the timeline (found by cluster_chaos with stepped clocks and power
        // loss of every node).
        if let Some(ms) = newest_entry_time(&group) {
            clock.observe(ms, None);
        }
        let batcher = Batcher::spawn(group.clone(), batch, clock.clone());
        Ok(Arc::new(Replica {
            group,
            batcher,
            changed,
            clock,
            cache: Mutex::new(EntryCache {
                map: BTreeMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                max_bytes: 64 << 20,
            }),
            retention_note: Mutex::new(String::new()),
            joining: Mutex::new(Joining::default()),
        }))
    }

    /// Cluster time now as this replica would stamp it as leader of its current term
    /// (continuing the log's timeline if it has just begun leading: see
    /// [`ClusterClock::begin_term`]).
    pub fn leader_now(&self) -> u64 {
        self.clock
            .begin_term(self.group.term(), || log_time(&self.group));
        self.clock.now()
    }

    /// Why retention is held back on this replica (empty if it is not).
    pub fn retention_note(&self) -> String {
        self.retention_note.lock().unwrap().clone()
    }

    /// Holds retention back at nothing deleted for `node` while it is added, until the
    /// hold is dropped (then the learner's acknowledgements hold it: `retention`).
    /// Also returns the highest purge requested before the hold existed: the node must hold
    /// the log from there on, whether or not that purge has run yet.
    fn hold_for_joining(self: &Arc<Self>, node: NodeId) -> (JoiningHold, u64) {
        let mut j = self.joining.lock().unwrap();
        let key = (node, j.next_hold);
        j.next_hold += 1;
        j.holds.insert(key, 0);
        let requested = j.purge_requested;
        drop(j);
        let hold = JoiningHold {
            replica: self.clone(),
            key,
        };
        (hold, requested)
    }

    /// Asks the log to purge up to `upto`, or less: no further than what a node being added
    /// holds (`retention`).
    pub(crate) async fn request_purge(&self, upto: u64) -> Result<()> {
        let upto = {
            let mut j = self.joining.lock().unwrap();
            let upto = j.holds.values().fold(upto, |u, l| u.min(*l));
            if upto == 0 {
                return Ok(());
            }
            j.purge_requested = j.purge_requested.max(upto);
            upto
        };
        self.group
            .purge_log(raft_store::types::LogIndex(upto))
            .await?;
        Ok(())
    }

    /// The node being added that holds the least of the log, and how much (see
    /// [`Replica::hold_for_joining`]).
    pub(crate) fn joining_low(&self) -> Option<(u64, NodeId)> {
        self.joining
            .lock()
            .unwrap()
            .holds
            .iter()
            .map(|((n, _), l)| (*l, *n))
            .min()
    }

    /// On the leader: adds `node` (Raft address `addr`, started with `--rejoin`) to the
    /// group, a learner until it holds the log, then a voter (`raftmq admin replica add`).
    ///
    /// Once retention has purged the start of the log, a replica catches up from the log only
    /// if it already holds it from there on: one that rejoined with an empty disk copied a
    /// peer's snapshot and retained log first (raft-store's seed). Otherwise the leader would
    /// send a snapshot without the bodies of the messages still retained, which the replica
    /// refuses; so such a node is refused up front ([`AddRefusal::MustCopyAgain`]). From the
    /// check until the learner has acknowledged, retention neither decides nor (on this
    /// leader) purges anything the node lacks (the hold; sim cluster_chaos 555144, where
    /// retention overtook a fresh copy in between).
    pub async fn add_replica(
        self: &Arc<Self>,
        node: NodeId,
        addr: String,
        catch_up: std::time::Duration,
    ) -> std::result::Result<(), AddRefusal> {
        if self.metrics().voters.contains(&node) {
            return Err(AddRefusal::Failed(format!(
                "node {node} is already a voter; to replace its data, remove it first"
            )));
        }
        let (hold, requested) = self.hold_for_joining(node);
        let purged = self.group.log().state().0.map(|p| p.index);
        let purged = purged.max((requested > 0).then_some(requested));
        if let Some(purged) = purged {
            let redo = format!(
                "stop node {node}, empty its directory group-{g}, and start it with `raftmq \
                 broker --rejoin`: it then copies a peer's snapshot and retained log before it \
                 joins (docs/operations.md, Replacing a failed disk)",
                g = self.group_id()
            );
            match self.group.probe_member(node, &addr).await {
                Ok(r) => match r.last_log_index {
                    Some(l) if l >= purged => hold.holds_up_to(l),
                    l => {
                        return Err(AddRefusal::MustCopyAgain(format!(
                            "{}, but retention has deleted this group's log up to {purged}, so \
                             it cannot catch up: {redo}",
                            l.map_or(format!("node {node} holds no log"), |l| format!(
                                "node {node} holds the log up to {l}"
                            )),
                        )));
                    }
                },
                Err(e) => {
                    return Err(AddRefusal::Failed(format!(
                        "node {node} does not answer ({e}); retention has deleted the start of \
                         this group's log, so it is added only once it answers that it holds \
                         the log from there (a copy takes a while: retry when it runs; if it \
                         never copied, {redo})"
                    )));
                }
            }
        }
        tracing::warn!(group = %self.group_id(), node, "adding a replica: learner, then voter");
        // In a task of its own: a caller that goes away (a closed CLI) must not cut the
        // addition short between the learner and its removal at the deadline.
        let group = self.group.clone();
        tokio::spawn(async move {
            let r = group.add_member(node, addr, catch_up).await;
            drop(hold);
            r
        })
        .await
        .map_err(|e| AddRefusal::Failed(format!("adding node {node}: {e}")))?
        .map_err(|e| AddRefusal::Failed(format!("adding node {node}: {e}")))?;
        tracing::warn!(group = %self.group_id(), node, "replica added as a voter");
        Ok(())
    }

    /// Sets [`Replica::retention_note`].
    pub fn set_retention_note(&self, note: String) {
        *self.retention_note.lock().unwrap() = note;
    }

    /// This replica's cluster clock (see [`ClusterClock`]).
    pub fn clock(&self) -> &ClusterClock {
        &self.clock
    }

    /// The Raft group id.
    pub fn group_id(&self) -> GroupId {
        self.group.config().group
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.group.config().node_id
    }

    /// Raft state.
    pub fn metrics(&self) -> GroupMetrics {
        self.group.metrics()
    }

    /// True if this replica leads its group now.
    pub fn is_leader(&self) -> bool {
        self.group.role() == Role::Leader
    }

    /// The leader this replica knows of (cheaper than [`Replica::metrics`]).
    pub fn leader(&self) -> Option<u64> {
        self.group.leader()
    }

    /// The underlying group.
    pub fn group(&self) -> &Arc<Group<BrokerApp>> {
        &self.group
    }

    /// Proposes `command` (group-committed with others) and waits for its outcome.
    pub async fn submit(&self, command: Command) -> Result<Outcome> {
        // Bad input never reaches the log (apply checks again, for entries that did).
        crate::limits::check(&command)
            .map_err(|why| BrokerError::Rejected(crate::state::Reject::Invalid(why)))?;
        self.batcher.submit(command).await
    }

    /// Reads the state on this replica, which must lead, after a ReadIndex round (a quorum
    /// confirms the leadership, and the state has applied everything committed before the
    /// call): the read reflects every write acknowledged before it began.
    pub async fn read_linearizable<T>(&self, f: impl FnOnce(&BrokerState) -> T) -> Result<T> {
        if !self.is_leader() {
            return Err(BrokerError::NotLeader {
                leader: self.leader(),
            });
        }
        self.group.read_index().await.map_err(|e| match e {
            // Reads change nothing, so a timed-out one is simply unavailable.
            raft_store::Error::Timeout(d) => {
                BrokerError::Unavailable(format!("leadership not confirmed within {d:?}"))
            }
            other => BrokerError::from_propose(other),
        })?;
        Ok(self.read(f))
    }

    /// Reads the applied state (briefly).
    pub fn read<T>(&self, f: impl FnOnce(&BrokerState) -> T) -> T {
        self.group.with_app(|a| f(a.app.state()))
    }

    /// Notified after every apply.
    pub fn changed(&self) -> &Arc<Notify> {
        &self.changed
    }

    /// Reads a committed message from the log.
    pub fn read_message(&self, e: &CqEntry) -> Result<StoredMessage> {
        let bytes = self.entry_bytes(e.log_index)?;
        command::decode_message(&bytes, e.pos, e.len).map_err(|m| corrupt(e, m))
    }

    /// Runs `f` on the head of the message `e` points at (its tag, keys and properties,
    /// borrowed: nothing is copied, the body is not decoded): what a SQL92 filter reads.
    pub fn with_head<T>(&self, e: &CqEntry, f: impl FnOnce(&MessageHead<'_>) -> T) -> Result<T> {
        let bytes = self.entry_bytes(e.log_index)?;
        let head = command::decode_head(&bytes, e.pos, e.len).map_err(|m| corrupt(e, m))?;
        Ok(f(&head))
    }

    /// The bytes of log entry `index`, through the entry cache.
    fn entry_bytes(&self, index: u64) -> Result<Arc<Vec<u8>>> {
        if let Some(b) = self.cache.lock().unwrap().get(index) {
            return Ok(b);
        }
        let entries = self.group.log().read(index..index + 1)?;
        let payload = match entries.into_iter().next().map(|en| en.payload) {
            Some(EntryPayload::Normal(r)) => Arc::new(r.0),
            other => {
                return Err(BrokerError::Corrupt(format!(
                    "log entry {index} is not a broker entry: {other:?}"
                )));
            }
        };
        self.cache.lock().unwrap().put(index, payload.clone());
        Ok(payload)
    }

    /// Hands leadership to the most caught-up voter if this replica leads; keeps running.
    pub async fn step_down(&self) -> bool {
        self.group.step_down().await
    }

    /// Stops the replica (handing leadership over first if it leads).
    pub async fn shutdown(&self) -> Result<()> {
        self.group.shutdown().await?;
        Ok(())
    }
}
