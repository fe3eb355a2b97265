//! The broker core every front end uses (the v2 service, admin, simulation): which local
//! replica leads, submitting commands with retries across leader changes, auto-creation of
//! topics and groups, the connected clients, and auto-renewal of push consumers' receipts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::batcher::now_ms;
use crate::command::ChangeInvisible;
use crate::command::Command;
use crate::command::Pop;
use crate::command::Receipt;
use crate::error::BrokerError;
use crate::error::Result;
use crate::model::GroupConfig;
use crate::model::StoredMessage;
use crate::model::TopicConfig;
use crate::model::TopicKind;
use crate::replica::Replica;
use crate::state::Delivery;
use crate::state::Outcome;
use crate::state::Reject;

/// Broker behaviour that is not replicated (per node).
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Create unknown topics and groups on first use (dev mode).
    pub auto_create: bool,
    /// Queues of an auto-created topic.
    pub default_queues: u32,
    /// Largest message body accepted.
    pub max_body_bytes: usize,
    /// How long a request waits for a leader before failing.
    pub leader_wait: Duration,
    /// Shortest invisible duration a receive may ask for.
    pub min_invisible: Duration,
    /// Longest invisible duration a receive may ask for.
    pub max_invisible: Duration,
    /// Invisible duration of auto-renewed (push consumer) deliveries, renewed while the client
    /// stays connected.
    pub renew_invisible: Duration,
    /// A client not heard from for this long is gone (its receipts are no longer renewed).
    pub client_timeout: Duration,
    /// The name routes give this broker (a Raft group).
    pub broker_name: String,
    /// The address routes point clients at, if not the one they dialed.
    pub advertised: Option<(String, u16)>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            auto_create: true,
            default_queues: 8,
            max_body_bytes: 4 << 20,
            leader_wait: Duration::from_secs(3),
            min_invisible: Duration::from_secs(1),
            max_invisible: Duration::from_secs(12 * 3600),
            renew_invisible: Duration::from_secs(60),
            client_timeout: Duration::from_secs(90),
            broker_name: "raftmq-g1".into(),
            advertised: None,
        }
    }
}

/// A telemetry stream to a client: where server-pushed commands go.
pub type TelemetrySender = mpsc::Sender<Result<raftmq_proto::v2::TelemetryCommand, tonic::Status>>;

/// A connected client.
struct Client {
    last_seen_ms: u64,
    telemetry: Option<TelemetrySender>,
}

/// A delivery the broker keeps invisible on a push consumer's behalf.
#[derive(Debug, Clone)]
struct Renewal {
    client: String,
    group: String,
    topic: String,
    receipt: Receipt,
    deadline_ms: u64,
}

/// See the module docs.
pub struct BrokerCore {
    /// Settings.
    pub settings: BrokerSettings,
    replicas: Vec<Arc<Replica>>,
    clients: Mutex<BTreeMap<String, Client>>,
    renewals: Mutex<BTreeMap<(String, String, u32, u64), Renewal>>,
}

impl BrokerCore {
    /// A core over the local `replicas` of the broker's group; starts the renewal task.
    pub fn new(settings: BrokerSettings, replicas: Vec<Arc<Replica>>) -> Arc<Self> {
        let core = Arc::new(BrokerCore {
            settings,
            replicas,
            clients: Mutex::new(BTreeMap::new()),
            renewals: Mutex::new(BTreeMap::new()),
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

    /// The local replicas.
    pub fn replicas(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    /// The Raft group this broker serves.
    pub fn group_id(&self) -> u64 {
        self.replicas.first().map_or(0, |r| r.group_id().0)
    }

    /// The local replica that leads, waiting up to `leader_wait` for an election.
    pub async fn leader(&self) -> Result<Arc<Replica>> {
        let deadline = tokio::time::Instant::now() + self.settings.leader_wait;
        loop {
            if let Some(r) = self.replicas.iter().find(|r| r.is_leader()) {
                return Ok(r.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                let hint = self.replicas.first().and_then(|r| r.metrics().leader);
                return Err(BrokerError::NotLeader { leader: hint });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Proposes `command` on the leader. A refusal before the command was written (not the
    /// leader) is retried on the new leader; anything else is returned as is.
    pub async fn submit(&self, command: Command) -> Result<Outcome> {
        let deadline = tokio::time::Instant::now() + self.settings.leader_wait;
        loop {
            let leader = self.leader().await?;
            match leader.submit(command.clone()).await {
                Err(BrokerError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Receives: proposes `pop` on the leader and reads the delivered messages from that
    /// replica's log (where the pop's outcome guarantees they are). Retries a definite refusal
    /// on a new leader like [`BrokerCore::submit`].
    pub async fn pop(&self, pop: Pop) -> Result<Vec<(Delivery, StoredMessage)>> {
        let deadline = tokio::time::Instant::now() + self.settings.leader_wait;
        loop {
            let leader = self.leader().await?;
            match leader.submit(Command::Pop(pop.clone())).await {
                Ok(Outcome::Popped { deliveries, .. }) => {
                    return deliveries
                        .into_iter()
                        .map(|d| {
                            let m = leader.read_message(&d.entry)?;
                            Ok((d, m))
                        })
                        .collect();
                }
                Ok(Outcome::Rejected(r)) => return Err(BrokerError::Rejected(r)),
                Ok(other) => {
                    return Err(BrokerError::Corrupt(format!(
                        "receive answered with {other:?}"
                    )));
                }
                Err(BrokerError::NotLeader { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The topic's configuration, creating the topic if auto-creation is on.
    pub async fn ensure_topic(&self, name: &str) -> Result<Option<TopicConfig>> {
        let leader = self.leader().await?;
        if let Some(t) = leader.read(|s| s.topics.get(name).cloned()) {
            return Ok(Some(t));
        }
        if !self.settings.auto_create {
            return Ok(None);
        }
        let t = TopicConfig {
            name: name.to_string(),
            queues: self.settings.default_queues,
            kind: TopicKind::Mixed,
        };
        self.submit(Command::UpsertTopic(t)).await?;
        Ok(self.leader().await?.read(|s| s.topics.get(name).cloned()))
    }

    /// The group's configuration, creating it with defaults if it does not exist and
    /// auto-creation is on (otherwise the defaults apply without a record).
    pub async fn ensure_group(&self, name: &str) -> Result<GroupConfig> {
        let leader = self.leader().await?;
        if let Some(g) = leader.read(|s| s.groups.get(name).cloned()) {
            return Ok(g);
        }
        let g = GroupConfig::with_defaults(name);
        if self.settings.auto_create {
            self.submit(Command::UpsertGroup(g.clone())).await?;
        }
        Ok(g)
    }

    /// Records that `client` was heard from.
    pub fn touch_client(&self, client: &str) {
        let mut clients = self.clients.lock().unwrap();
        let c = clients.entry(client.to_string()).or_insert(Client {
            last_seen_ms: 0,
            telemetry: None,
        });
        c.last_seen_ms = now_ms();
    }

    /// Registers a client's telemetry stream.
    pub fn set_telemetry(&self, client: &str, sender: Option<TelemetrySender>) {
        self.touch_client(client);
        if let Some(c) = self.clients.lock().unwrap().get_mut(client) {
            c.telemetry = sender;
        }
    }

    /// Forgets a client that said goodbye; its auto-renewed deliveries are left to expire.
    pub fn remove_client(&self, client: &str) {
        self.clients.lock().unwrap().remove(client);
        self.renewals
            .lock()
            .unwrap()
            .retain(|_, r| r.client != client);
    }

    /// Keeps a delivery invisible on behalf of a connected push consumer.
    pub fn track_renewal(
        &self,
        client: &str,
        group: &str,
        topic: &str,
        receipt: Receipt,
        deadline_ms: u64,
    ) {
        self.renewals.lock().unwrap().insert(
            (
                group.to_string(),
                topic.to_string(),
                receipt.queue.0,
                receipt.offset.0,
            ),
            Renewal {
                client: client.to_string(),
                group: group.to_string(),
                topic: topic.to_string(),
                receipt,
                deadline_ms,
            },
        );
    }

    /// Stops renewing a delivery (acked, or changed by the client).
    pub fn untrack_renewal(&self, group: &str, topic: &str, receipt: &Receipt) {
        self.renewals.lock().unwrap().remove(&(
            group.to_string(),
            topic.to_string(),
            receipt.queue.0,
            receipt.offset.0,
        ));
    }

    async fn renew_due(&self) {
        let now = now_ms();
        let alive_after = now.saturating_sub(self.settings.client_timeout.as_millis() as u64);
        let due: Vec<Renewal> = {
            let clients = self.clients.lock().unwrap();
            let mut renewals = self.renewals.lock().unwrap();
            // A client that went away gets no renewals: its messages reappear after the deadline.
            renewals.retain(|_, r| {
                clients
                    .get(&r.client)
                    .is_some_and(|c| c.last_seen_ms >= alive_after)
            });
            let horizon = now + self.settings.renew_invisible.as_millis() as u64 / 3;
            renewals
                .values()
                .filter(|r| r.deadline_ms <= horizon)
                .cloned()
                .collect()
        };
        for r in due {
            let cmd = Command::Renew(ChangeInvisible {
                group: r.group.clone(),
                topic: r.topic.clone(),
                receipt: r.receipt,
                invisible_ms: self.settings.renew_invisible.as_millis() as u64,
            });
            let key = (
                r.group.clone(),
                r.topic.clone(),
                r.receipt.queue.0,
                r.receipt.offset.0,
            );
            match self.submit(cmd).await {
                Ok(Outcome::Changed { deadline_ms, .. }) => {
                    if let Some(x) = self.renewals.lock().unwrap().get_mut(&key) {
                        x.deadline_ms = deadline_ms;
                    }
                }
                Ok(Outcome::Rejected(Reject::InvalidReceipt)) => {
                    self.renewals.lock().unwrap().remove(&key);
                }
                _ => {} // try again next tick
            }
        }
    }
}
