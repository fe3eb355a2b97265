//! The broker core of one node, shared by every front end (the v2 service, admin, forwarding,
//! simulation): the Raft groups this node hosts, submitting commands to each group's leader
//! (locally, or forwarded in one hop), auto-creation of topics and consumer groups, the
//! connected clients (`clients`), and auto-renewal of push consumers' receipts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::Semaphore;

use crate::batcher::now_ms;
use crate::clients::Clients;
pub use crate::clients::TelemetrySender;
use crate::command::ChangeInvisible;
use crate::command::Command;
use crate::command::Pop;
use crate::command::PopOrder;
use crate::command::Receipt;
use crate::error::BrokerError;
use crate::error::Result;
use crate::filter::sql92::Sql92;
use crate::forward::client::Forwarder;
use crate::forward::wire::Popped;
use crate::forward::wire::Read;
use crate::forward::wire::ReadAnswer;
use crate::limits;
use crate::limits::ClientLimits;
use crate::model::GroupConfig;
use crate::model::TopicConfig;
use crate::model::TopicKind;
use crate::replica::Replica;
use crate::state::BrokerState;
use crate::state::Outcome;
use crate::state::Reject;
use crate::storage_guard::StorageGuard;

/// Broker behaviour that is not replicated (per node).
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Create unknown topics and groups on first use (dev mode).
    pub auto_create: bool,
    /// Queues per hosted group of an auto-created topic.
    pub default_queues: u32,
    /// How long a request waits for a leader (an election) before failing.
    pub leader_wait: Duration,
    /// Deadline of one forwarded request.
    pub forward_timeout: Duration,
    /// Shortest invisible duration a receive may ask for.
    pub min_invisible: Duration,
    /// Longest invisible duration a receive may ask for.
    pub max_invisible: Duration,
    /// Invisible duration of auto-renewed (push consumer) deliveries, renewed while the client
    /// stays connected.
    pub renew_invisible: Duration,
    /// A client not heard from for this long is gone (its receipts are no longer renewed).
    pub client_timeout: Duration,
    /// What one client may ask of this node (`[limits]` in the config).
    pub limits: ClientLimits,
    /// Refuse sends while the data directory's disk has fewer free bytes (0: never).
    pub min_free_bytes: u64,
    /// How long messages are kept (`[retention]`).
    pub retention: crate::retention::RetentionSettings,
    /// Transaction check-backs (`[transactions]`).
    pub transactions: crate::checkback::TxSettings,
    /// The idempotent producer's window (`[dedup]`), proposed by each group's leader.
    pub dedup: crate::command::DedupWindow,
    /// Log segment size: retention deletes whole segments (`[storage] segment_mb`).
    pub segment_bytes: u64,
    /// Check every sealed log segment's frames at start-up instead of trusting its summary
    /// (`[storage] verify_log_on_start`).
    pub verify_log_on_start: bool,
    /// Snapshot (checkpoint) the state after this many applied entries (`[storage]
    /// snapshot_every`): a restart replays at most this many entries, and the consume
    /// queues' files are fsynced this often.
    pub snapshot_every: u64,
    /// A replica whose data directory is empty waits to be added to its group (`raftmq admin
    /// replica add`) instead of bootstrapping it (`raftmq broker --rejoin`, after its disk
    /// was replaced and it was removed from the group).
    pub rejoin: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            auto_create: true,
            default_queues: 8,
            leader_wait: Duration::from_secs(3),
            forward_timeout: Duration::from_secs(10),
            min_invisible: Duration::from_secs(1),
            max_invisible: Duration::from_secs(12 * 3600),
            renew_invisible: Duration::from_secs(60),
            client_timeout: Duration::from_secs(90),
            limits: ClientLimits::default(),
            min_free_bytes: crate::config::DEFAULT_MIN_FREE_MB << 20,
            retention: crate::retention::RetentionSettings::default(),
            transactions: crate::checkback::TxSettings::default(),
            dedup: crate::config::DedupToml::default().window(),
            segment_bytes: (crate::config::DEFAULT_SEGMENT_MB as u64) << 20,
            verify_log_on_start: false,
            snapshot_every: crate::config::DEFAULT_SNAPSHOT_EVERY,
            rejoin: false,
        }
    }
}

/// Where a node can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// Raft transport (and forwarding) address.
    pub raft: String,
    /// Client (v2) address.
    pub client: String,
}

/// A Raft group this node hosts a replica of.
pub struct HostedGroup {
    /// Group id.
    pub id: u64,
    /// The broker name routes give it.
    pub name: String,
    /// The local replica.
    pub replica: Arc<Replica>,
    /// The node that should lead when healthy.
    pub preferred_leader: Option<u64>,
    /// The members the configuration names: what routes carry while the replica knows no
    /// membership yet (a pristine replica probing its peers before it joins).
    pub configured_members: Vec<u64>,
}

/// (Raft group, consumer group, topic, queue, offset) of a renewed delivery.
type RenewalKey = (u64, String, String, u32, u64);

/// A delivery the broker keeps invisible on a push consumer's behalf.
#[derive(Debug, Clone)]
struct Renewal {
    client: String,
    group: u64,
    consumer_group: String,
    topic: String,
    receipt: Receipt,
    deadline_ms: u64,
    /// The delivery's attempt (the retry backoff of a client that went away depends on it).
    attempt: u32,
}

/// See the module docs.
pub struct BrokerCore {
    /// Settings.
    pub settings: BrokerSettings,
    /// Refuses sends while the disk is nearly full.
    pub storage: StorageGuard,
    node_id: u64,
    peers: BTreeMap<u64, NodeAddrs>,
    groups: BTreeMap<u64, HostedGroup>,
    forwarder: Forwarder,
    /// The cluster credential: signs forwarded requests, and checks admin membership changes.
    key: raftmq_proto::auth::ClusterKey,
    clients: Clients,
    renewals: Mutex<BTreeMap<RenewalKey, Renewal>>,
    round_robin: AtomicU64,
    draining: AtomicBool,
    long_polls: Arc<Semaphore>,
    telemetry_sessions: Arc<Semaphore>,
}

impl BrokerCore {
    /// A core for node `node_id` hosting `groups`, knowing every node's addresses (`peers`);
    /// starts the renewal task.
    pub fn new(
        settings: BrokerSettings,
        node_id: u64,
        peers: BTreeMap<u64, NodeAddrs>,
        groups: Vec<HostedGroup>,
        key: raftmq_proto::auth::ClusterKey,
    ) -> Arc<Self> {
        let core = Arc::new(BrokerCore {
            node_id,
            peers,
            groups: groups.into_iter().map(|g| (g.id, g)).collect(),
            forwarder: Forwarder::new(key.clone(), node_id),
            key,
            clients: Clients::new(settings.limits.max_clients),
            renewals: Mutex::new(BTreeMap::new()),
            round_robin: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            long_polls: Arc::new(Semaphore::new(settings.limits.max_long_polls)),
            telemetry_sessions: Arc::new(Semaphore::new(settings.limits.max_telemetry_sessions)),
            storage: StorageGuard::new(settings.min_free_bytes),
            settings,
        });
        let weak = Arc::downgrade(&core);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(core) = weak.upgrade() else { return };
                core.renew_due().await;
            }
        });
        core
    }

    /// The cluster credential (`cluster_secret`).
    pub fn cluster_key(&self) -> &raftmq_proto::auth::ClusterKey {
        &self.key
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The hosted groups, by id.
    pub fn groups(&self) -> impl Iterator<Item = &HostedGroup> {
        self.groups.values()
    }

    /// A hosted group.
    pub fn group(&self, id: u64) -> Result<&HostedGroup> {
        self.groups
            .get(&id)
            .ok_or(BrokerError::Rejected(Reject::QueueNotFound))
    }

    /// The hosted group routes call `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&HostedGroup> {
        self.groups.values().find(|g| g.name == name)
    }

    /// Every node's addresses.
    pub fn peers(&self) -> &BTreeMap<u64, NodeAddrs> {
        &self.peers
    }

    /// Reads group `id`'s state from the local replica (a follower's may lag slightly).
    pub fn read<T>(&self, id: u64, f: impl FnOnce(&BrokerState) -> T) -> Result<T> {
        Ok(self.group(id)?.replica.read(f))
    }

    /// The client (v2) address of group `id`'s leader, or `None` if this node leads it. Waits
    /// up to `leader_wait` while no leader is known.
    pub async fn leader_client_addr(&self, id: u64) -> Result<Option<String>> {
        let deadline = tokio::time::Instant::now() + self.settings.leader_wait;
        let replica = self.group(id)?.replica.clone();
        loop {
            if replica.is_leader() {
                return Ok(None);
            }
            if let Some(l) = replica.leader()
                && l != self.node_id
                && let Some(p) = self.peers.get(&l)
            {
                return Ok(Some(p.client.clone()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::NotLeader { leader: None });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads group `id`'s state on this node, which must lead it, after a ReadIndex round
    /// (a quorum confirms the leadership and the state has applied everything committed
    /// before the call): the read reflects every write acknowledged before it began.
    pub async fn read_linearizable<T>(
        &self,
        id: u64,
        f: impl FnOnce(&BrokerState) -> T,
    ) -> Result<T> {
        self.group(id)?.replica.read_linearizable(f).await
    }

    /// The group's members' client addresses, the leader's first (what routes carry).
    pub fn endpoints(&self, id: u64) -> Result<Vec<String>> {
        Ok(self
            .members(id)?
            .into_iter()
            .filter_map(|n| self.peers.get(&n).map(|p| p.client.clone()))
            .collect())
    }

    /// The group's members, the leader first: its voters, or while the replica knows no
    /// membership (still probing, or loading) the configured members. A route with no
    /// endpoint at all is worse than one that costs a hop: the official clients cache a route
    /// for 30 s and fail every send to an empty one (tests/cluster.rs failed so in CI when a
    /// probing replica's registration reached the nameserver first).
    pub fn members(&self, id: u64) -> Result<Vec<u64>> {
        let g = self.group(id)?;
        let m = g.replica.metrics();
        let mut members: Vec<u64> = if m.voters.is_empty() {
            g.configured_members.clone()
        } else {
            m.voters.iter().copied().collect()
        };
        members.sort_by_key(|n| (Some(*n) != m.leader, *n));
        Ok(members)
    }

    fn leader_addr(&self, leader: u64) -> Result<String> {
        self.peers
            .get(&leader)
            .map(|p| p.raft.clone())
            .ok_or_else(|| {
                BrokerError::Unavailable(format!("leader {leader} is not in the node table"))
            })
    }

    /// Where to run a request for group `id` now: here, or at the leader's address. Waits
    /// (up to `leader_wait` from `deadline`) while no leader is known.
    async fn route(&self, id: u64, deadline: tokio::time::Instant) -> Result<Option<String>> {
        let replica = self.group(id)?.replica.clone();
        loop {
            if replica.is_leader() {
                return Ok(None);
            }
            match replica.leader() {
                Some(l) if l != self.node_id => return self.leader_addr(l).map(Some),
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::NotLeader { leader: None });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs a request on group `id`'s leader: `local()` if this node leads, else `remote(addr)`
    /// at the leader's internal address. A refusal that happened before anything ran (not the
    /// leader, no connection) is retried after the election, up to `leader_wait`; anything
    /// else is returned as is.
    async fn on_leader<T, L, LF, R, RF>(&self, id: u64, local: L, remote: R) -> Result<T>
    where
        L: Fn() -> LF,
        LF: std::future::Future<Output = Result<T>>,
        R: Fn(String) -> RF,
        RF: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.settings.leader_wait;
        loop {
            let r = match self.route(id, deadline).await? {
                None => local().await,
                Some(addr) => remote(addr).await,
            };
            match r {
                Err(BrokerError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Proposes `command` to group `id`'s leader, here or one hop away.
    pub async fn submit(&self, id: u64, command: Command) -> Result<Outcome> {
        self.submit_within(id, command, None).await
    }

    /// [`BrokerCore::submit`] for a client that waits at most `wait` (its gRPC deadline): a
    /// forwarded command is not proposed after that (`forward/lane.rs`), so a command the
    /// client was told is unknown is not stored after what it sent since.
    pub async fn submit_within(
        &self,
        id: u64,
        command: Command,
        wait: Option<Duration>,
    ) -> Result<Outcome> {
        if matches!(command, Command::Send(_) | Command::Half(_)) {
            self.storage.check()?;
        }
        // The client's deadline is absolute: a retry after an election gets what is left of
        // it, not the whole wait again (review: each retry restarted the budget).
        let forward_timeout = self.settings.forward_timeout;
        let client_deadline = wait.map(|w| tokio::time::Instant::now() + w);
        self.on_leader(
            id,
            || async { self.group(id)?.replica.submit(command.clone()).await },
            |addr| {
                let command = &command;
                let timeout = client_deadline.map_or(forward_timeout, |d| {
                    d.saturating_duration_since(tokio::time::Instant::now())
                        .min(forward_timeout)
                });
                async move { self.forwarder.submit(&addr, id, command, timeout).await }
            },
        )
        .await
    }

    /// Runs `command` on the local replica if it leads; never forwards (the forward service's
    /// entry point, so a request moves at most one hop).
    pub async fn submit_local(&self, id: u64, command: Command) -> Result<Outcome> {
        // The leader's disk is the one the entry goes to first.
        if matches!(command, Command::Send(_) | Command::Half(_)) {
            self.storage.check()?;
        }
        let r = &self.group(id)?.replica;
        if !r.is_leader() {
            return Err(BrokerError::NotLeader { leader: r.leader() });
        }
        r.submit(command).await
    }

    /// Receives: proposes `pop` on group `id`'s leader and reads the delivered messages from
    /// that leader's log (where the pop's outcome guarantees they are).
    pub async fn pop(&self, id: u64, pop: Pop) -> Result<Popped> {
        let timeout = self.settings.forward_timeout;
        self.on_leader(
            id,
            || self.pop_local(id, pop.clone()),
            |addr| {
                let pop = &pop;
                async move { self.forwarder.pop(&addr, id, pop, timeout).await }
            },
        )
        .await
    }

    /// [`BrokerCore::pop`] on the local replica only.
    pub async fn pop_local(&self, id: u64, pop: Pop) -> Result<Popped> {
        let r = self.group(id)?.replica.clone();
        if !r.is_leader() {
            return Err(BrokerError::NotLeader { leader: r.leader() });
        }
        let mut pop = pop;
        if let Some(text) = &pop.sql {
            // Checked where the receive came in; a forwarded one is checked again here.
            let sql = Sql92::parse(text).map_err(|e| {
                BrokerError::Rejected(Reject::Invalid(format!("SQL92 filter: {e}")))
            })?;
            pop.verdicts = Some(crate::filter::judge::judge(&r, &pop, &sql)?);
            pop.order = PopOrder::OldestFirst;
        }
        match r.submit(Command::Pop(pop)).await? {
            Outcome::Popped { deliveries, .. } => deliveries
                .into_iter()
                .map(|d| {
                    let m = r.read_message(&d.entry)?;
                    Ok((d, m))
                })
                .collect(),
            Outcome::Rejected(x) => Err(BrokerError::Rejected(x)),
            other => Err(BrokerError::Corrupt(format!(
                "receive answered with {other:?}"
            ))),
        }
    }

    /// Runs a read on group `id`'s leader (here, or one hop away) after a ReadIndex round. A
    /// read changes nothing, so a forward that failed in flight is "unavailable", never an
    /// unknown outcome.
    pub async fn leader_read(&self, id: u64, read: Read) -> Result<ReadAnswer> {
        let wait = match &read {
            Read::Pull { wait_ms, .. } | Read::PullSql { wait_ms, .. } => {
                Duration::from_millis(*wait_ms)
            }
            _ => Duration::ZERO,
        };
        let timeout = self.settings.forward_timeout + wait;
        self.on_leader(
            id,
            || self.leader_read_local(id, read.clone()),
            |addr| {
                let read = &read;
                async move { self.forwarder.read(&addr, id, read, timeout).await }
            },
        )
        .await
        .map_err(|e| match e {
            BrokerError::Unknown(why) => BrokerError::Unavailable(why),
            other => other,
        })
    }

    /// [`BrokerCore::leader_read`] on the local replica only (the forward service's entry
    /// point).
    pub async fn leader_read_local(&self, id: u64, read: Read) -> Result<ReadAnswer> {
        crate::reads::run(&self.group(id)?.replica, read).await
    }

    /// The topic's configuration in every hosted group that has it, creating it in each group
    /// when auto-creation is on. Empty if it exists nowhere (and may not be created).
    pub async fn ensure_topic(&self, name: &str) -> Result<Vec<(u64, TopicConfig)>> {
        let mut out = Vec::new();
        for g in self.groups.values() {
            let mut t = g.replica.read(|s| s.topics.get(name).cloned());
            if t.is_none() && self.settings.auto_create {
                let cfg = TopicConfig {
                    name: name.to_string(),
                    queues: self.settings.default_queues,
                    kind: TopicKind::Mixed,
                };
                self.submit(g.id, Command::CreateTopic(cfg.clone())).await?;
                t = Some(
                    g.replica
                        .read(|s| s.topics.get(name).cloned())
                        .unwrap_or(cfg),
                );
            }
            if let Some(t) = t {
                out.push((g.id, t));
            }
        }
        Ok(out)
    }

    /// The consumer group's configuration, creating it in every hosted group when
    /// auto-creation is on (the defaults apply where it has no record).
    pub async fn ensure_group(&self, name: &str) -> Result<GroupConfig> {
        let mut found = None;
        for g in self.groups.values() {
            match g.replica.read(|s| s.groups.get(name).cloned()) {
                Some(c) => {
                    found.get_or_insert(c);
                }
                None if self.settings.auto_create => {
                    let c = found
                        .clone()
                        .unwrap_or_else(|| GroupConfig::with_defaults(name));
                    self.submit(g.id, Command::CreateGroup(c.clone())).await?;
                    // What applied: an existing configuration wins over the defaults.
                    let c = g.replica.read(|s| s.groups.get(name).cloned()).unwrap_or(c);
                    found.get_or_insert(c);
                }
                None => {}
            }
        }
        Ok(found.unwrap_or_else(|| GroupConfig::with_defaults(name)))
    }

    /// A place for one more long poll (receive or pull), or `None` when the node already
    /// holds `limits.max_long_polls`: the caller answers TOO_MANY_REQUESTS at once instead of
    /// queueing without bound.
    pub fn long_poll_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.long_polls.clone().try_acquire_owned().ok()
    }

    /// A place for one more Telemetry session, or `None` at `limits.max_telemetry_sessions`.
    pub fn telemetry_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.telemetry_sessions.clone().try_acquire_owned().ok()
    }

    /// A counter for spreading sends over queues.
    /// Marks this node as stopping: it no longer offers itself to clients (registrations
    /// name no groups) and should not lead.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once [`BrokerCore::set_draining`] was called.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A counter for spreading sends over queues.
    pub fn next_round_robin(&self) -> u64 {
        self.round_robin.fetch_add(1, Ordering::Relaxed)
    }

    /// The clients this node has heard from. A client that said goodbye
    /// ([`Clients::remove`]) has its auto-renewed deliveries released at the next renewal
    /// tick (back after the group's retry backoff: `renew_due`).
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The forwarding client (calls to peers).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Keeps a delivery invisible on behalf of a connected push consumer.
    pub fn track_renewal(
        &self,
        client: &str,
        group: u64,
        consumer_group: &str,
        d: &crate::state::Delivery,
    ) {
        self.renewals.lock().unwrap().insert(
            (
                group,
                consumer_group.to_string(),
                d.topic.clone(),
                d.receipt.queue.0,
                d.receipt.offset.0,
            ),
            Renewal {
                client: client.to_string(),
                group,
                consumer_group: consumer_group.to_string(),
                topic: d.topic.clone(),
                receipt: d.receipt,
                deadline_ms: d.deadline_ms,
                attempt: d.attempt,
            },
        );
    }

    /// Stops renewing a delivery (acked, or changed by the client).
    pub fn untrack_renewal(
        &self,
        group: u64,
        consumer_group: &str,
        topic: &str,
        receipt: &Receipt,
    ) {
        self.renewals.lock().unwrap().remove(&(
            group,
            consumer_group.to_string(),
            topic.to_string(),
            receipt.queue.0,
            receipt.offset.0,
        ));
    }

    /// Renews, in one command per Raft group (at most [`limits::MAX_RENEWALS`] receipts
    /// each), every tracked delivery whose deadline falls within a third of the renewal
    /// period. Deadlines are cluster time, so "due" is judged by the group's cluster clock,
    /// never this node's wall clock (a node whose clock ran behind used to renew too late and
    /// let a push consumer's message be redelivered while it was still being processed).
    async fn renew_due(&self) {
        let wall = now_ms();
        let alive_after = wall.saturating_sub(self.settings.client_timeout.as_millis() as u64);
        let renew_ms = self.settings.renew_invisible.as_millis() as u64;
        // Each group's cluster clock, read once per tick and outside the locks.
        let horizons: BTreeMap<u64, u64> = self
            .groups
            .values()
            .map(|g| (g.id, g.replica.clock().now().saturating_add(renew_ms / 3)))
            .collect();
        // Per Raft group: (the renewal to update, or none for a released one; its new
        // invisible duration).
        type Change = (Option<RenewalKey>, Renewal, u64);
        let mut due: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
        let mut released = Vec::new();
        {
            // Forget clients not heard from (bounded memory; their Telemetry is gone too).
            self.clients.forget_idle(alive_after);
            let mut renewals = self.renewals.lock().unwrap();
            // A client that went away (goodbye, or silence) gets no more renewals.
            renewals.retain(|_, r| {
                let alive = self.clients.contains(&r.client);
                if !alive {
                    released.push(r.clone());
                }
                alive
            });
            for (k, r) in renewals.iter() {
                let Some(horizon) = horizons.get(&r.group) else {
                    continue;
                };
                if r.deadline_ms <= *horizon {
                    let change = (Some(k.clone()), r.clone(), renew_ms);
                    due.entry(r.group).or_default().push(change);
                }
            }
        }
        // Its deliveries come back after the consumer group's retry backoff for their attempt,
        // as RocketMQ's proxy does for an offline push consumer, not at the end of the lease
        // (up to `renew_invisible` later). The same receipt: if the client was only slow, its
        // ack still counts until the message is delivered again.
        for r in released {
            let Some(g) = self.groups.get(&r.group) else {
                continue;
            };
            let backoff = g.replica.read(|s| {
                s.groups
                    .get(&r.consumer_group)
                    .map(|c| c.backoff_ms(r.attempt))
            });
            let backoff = backoff.unwrap_or_else(|| {
                crate::model::GroupConfig::with_defaults(r.consumer_group.as_str())
                    .backoff_ms(r.attempt)
            });
            due.entry(r.group).or_default().push((None, r, backoff));
        }
        let batches = due.into_iter().flat_map(|(group, list)| {
            list.chunks(limits::MAX_RENEWALS)
                .map(|c| (group, c.to_vec()))
                .collect::<Vec<_>>()
        });
        let runs = batches.map(|(group, list)| async move {
            let cmd = Command::RenewMany(
                list.iter()
                    .map(|(_, r, invisible_ms)| ChangeInvisible {
                        group: r.consumer_group.clone(),
                        topic: r.topic.clone(),
                        receipt: r.receipt,
                        invisible_ms: *invisible_ms,
                    })
                    .collect(),
            );
            // Anything but an answer: try again next tick (a released delivery is not tried
            // again: it comes back at the end of its lease instead).
            if let Ok(Outcome::Renewed(results)) = self.submit(group, cmd).await {
                let mut renewals = self.renewals.lock().unwrap();
                for ((key, _, _), result) in list.iter().zip(results) {
                    let Some(key) = key else { continue };
                    match result {
                        Some(deadline_ms) => {
                            if let Some(x) = renewals.get_mut(key) {
                                x.deadline_ms = deadline_ms;
                            }
                        }
                        // Stale: acked, changed or redelivered since.
                        None => {
                            renewals.remove(key);
                        }
                    }
                }
            }
        });
        futures::future::join_all(runs).await;
    }
}
