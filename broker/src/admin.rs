//! RaftMQ's admin service (`raftmq.admin.Admin`): create or update topics and groups (in every
//! Raft group the node hosts), report the Raft and topic state, add or remove a group's
//! replicas (replacing a failed disk, docs/operations.md), and list or decide undecided
//! transactions. Served beside the v2 endpoint;
//! `raftmq admin` calls it.

use std::sync::Arc;

use raftmq_proto::admin as pb;
use raftmq_proto::admin::admin_server::Admin;
use raftmq_proto::names;
use tonic::Request;
use tonic::Response;

use crate::command::Command;
use crate::command::TopicRetention;
use crate::core::BrokerCore;
use crate::limits;
use crate::model::GroupConfig;
use crate::model::TopicConfig;
use crate::service::convert::parse_topic_kind;
use crate::service::convert::topic_kind_name;

/// The admin service over a broker core.
pub struct AdminServer {
    core: Arc<BrokerCore>,
}

impl AdminServer {
    /// An admin service over `core`.
    pub fn new(core: Arc<BrokerCore>) -> Self {
        Self { core }
    }

    /// Applies a configuration command to every group this node hosts; a group that refuses
    /// it is an error (the groups before it have applied it: the command is idempotent, so
    /// the operator repeats it).
    /// [`pb::ResetSpec`]: a [`Command::Reset`] in each named Raft group hosting the topic.
    async fn reset(&self, r: pb::ResetSpec) -> Result<Vec<pb::ResetMove>, String> {
        use crate::command::Reset;
        use crate::command::ResetTo;
        use crate::model::QueueId;
        use crate::model::QueueOffset;
        use pb::reset_spec::To;
        if !names::stored_group_ok(&r.group) {
            return Err(format!("illegal group name {:?}", r.group));
        }
        if !names::stored_topic_ok(&r.topic) {
            return Err(format!("illegal topic name {:?}", r.topic));
        }
        let to = match r.to {
            Some(To::Earliest(_)) => ResetTo::Earliest,
            Some(To::Latest(_)) => ResetTo::Latest,
            Some(To::Offset(o)) => ResetTo::Offset(QueueOffset(o)),
            Some(To::TimestampMs(ms)) => ResetTo::Time(ms),
            None => return Err("say where to: earliest, latest, an offset or a time".into()),
        };
        let queue = match r.queue {
            -1 => None,
            q if q >= 0 => Some(QueueId(q as u32)),
            q => return Err(format!("queue {q}: give a queue id, or -1 for every queue")),
        };
        let groups: Vec<_> = self
            .core
            .groups()
            .filter(|g| r.broker.is_empty() || g.name == r.broker)
            .filter(|g| g.replica.read(|s| s.topics.contains_key(&r.topic)))
            .collect();
        if groups.is_empty() {
            return Err(format!(
                "no Raft group{} of this node hosts topic {}",
                if r.broker.is_empty() {
                    String::new()
                } else {
                    format!(" named {:?}", r.broker)
                },
                r.topic
            ));
        }
        let mut moved = Vec::new();
        for g in groups {
            let cmd = Command::Reset(Reset {
                group: r.group.clone(),
                topic: r.topic.clone(),
                queue,
                to,
            });
            match self.core.submit(g.id, cmd).await {
                Ok(crate::state::Outcome::Reset(qs)) => {
                    moved.extend(qs.into_iter().map(|q| pb::ResetMove {
                        broker: g.name.clone(),
                        queue: q.queue.0 as i32,
                        from: q.from.0,
                        to: q.to.0,
                        dropped_in_flight: q.dropped,
                    }));
                }
                Ok(o) => return Err(format!("group {}: refused: {o:?}", g.name)),
                Err(e) => return Err(format!("group {}: {e}", g.name)),
            }
        }
        Ok(moved)
    }

    async fn on_every_group(&self, cmd: Command) -> Result<(), String> {
        for g in self.core.groups() {
            match self.core.submit(g.id, cmd.clone()).await {
                Ok(crate::state::Outcome::Rejected(r)) => {
                    return Err(format!("group {}: refused: {r:?}", g.name));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("group {}: {e}", g.name)),
            }
        }
        Ok(())
    }
}

/// Which membership change a [`pb::ReplicaChange`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
}

impl Change {
    /// The method name a request is signed for.
    fn method(self) -> &'static str {
        match self {
            Change::Add => "raftmq.admin.Admin/AddReplica",
            Change::Remove => "raftmq.admin.Admin/RemoveReplica",
        }
    }
}

/// The bytes a membership change is signed over.
pub fn replica_change_body(r: &pb::ReplicaChange) -> Vec<u8> {
    let mut b = Vec::with_capacity(25);
    b.extend_from_slice(&r.group.to_le_bytes());
    b.extend_from_slice(&r.node.to_le_bytes());
    b.push(u8::from(r.forwarded));
    b.extend_from_slice(&r.catch_up_ms.to_le_bytes());
    b
}

/// How long a replica being added may take to copy the log, unless the request says.
pub const DEFAULT_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(600);

/// Signs a membership change with the cluster secret, as `sender` (0: an operator's CLI).
pub fn sign_replica_change(
    key: &raftmq_proto::auth::ClusterKey,
    add: bool,
    sender: u64,
    now_ms: u64,
    r: pb::ReplicaChange,
) -> Request<pb::ReplicaChange> {
    let change = if add { Change::Add } else { Change::Remove };
    let mut req = Request::new(r);
    key.attach(
        &mut req,
        change.method(),
        sender,
        now_ms,
        &replica_change_body(&r),
    );
    req
}

impl AdminServer {
    /// Runs a membership change of one group on its leader: here, or passed on once to the
    /// leader's admin endpoint (signed by this node). Only a request signed with the cluster
    /// secret is run: the admin service shares the client port, and removing replicas can
    /// leave a group one failure from losing data.
    async fn change_replicas(
        &self,
        request: Request<pb::ReplicaChange>,
        change: Change,
    ) -> Result<(), String> {
        let req = *request.get_ref();
        self.core
            .cluster_key()
            .check(
                request.metadata(),
                change.method(),
                &replica_change_body(&req),
                crate::batcher::now_ms(),
            )
            .map_err(|s| {
                format!(
                    "refused: membership changes must be signed with the cluster secret \
                     (raftmq admin --cluster-secret-file): {}",
                    s.message()
                )
            })?;
        let hosted = self
            .core
            .group(req.group)
            .map_err(|_| format!("this node hosts no group {}", req.group))?;
        let replica = hosted.replica.clone();
        if !replica.is_leader() {
            if req.forwarded {
                return Err(format!(
                    "group {}: this node is not the leader (the request was already passed on once)",
                    req.group
                ));
            }
            let addr =
                self.core.leader_client_addr(req.group).await.map_err(|e| {
                    format!("group {}: no leader to run the change: {e}", req.group)
                })?;
            let Some(addr) = addr else {
                return Err(format!("group {}: leadership moved; try again", req.group));
            };
            let mut client =
                raftmq_proto::admin::admin_client::AdminClient::connect(format!("http://{addr}"))
                    .await
                    .map_err(|e| {
                        format!(
                            "group {}: cannot reach the leader at {addr}: {e}",
                            req.group
                        )
                    })?;
            let fwd = sign_replica_change(
                self.core.cluster_key(),
                change == Change::Add,
                self.core.node_id(),
                crate::batcher::now_ms(),
                pb::ReplicaChange {
                    forwarded: true,
                    ..req
                },
            );
            let r = match change {
                Change::Add => client.add_replica(fwd).await,
                Change::Remove => client.remove_replica(fwd).await,
            }
            .map_err(|e| format!("group {}: the leader at {addr} answered {e}", req.group))?;
            let err = r.into_inner().error;
            return if err.is_empty() { Ok(()) } else { Err(err) };
        }
        let m = replica.metrics();
        let node = req.node;
        match change {
            Change::Remove => {
                if !m.voters.contains(&node) && !m.learners.contains(&node) {
                    return Err(format!(
                        "group {}: node {node} is not a member (voters {:?})",
                        req.group, m.voters
                    ));
                }
                if m.voters.len() == 1 && m.voters.contains(&node) {
                    return Err(format!(
                        "group {}: node {node} is the only voter; add its replacement first",
                        req.group
                    ));
                }
                // The change commits in the joint configuration, which needs a majority of
                // the old voters and of the new: removing a live node while another is down
                // would freeze the group until that one returns. Refuse unless a majority of
                // the voters left are in contact with this leader.
                let left: Vec<u64> = m.voters.iter().copied().filter(|v| *v != node).collect();
                let reachable: Vec<u64> = left
                    .iter()
                    .copied()
                    .filter(|v| *v == m.node || m.in_contact.contains(v))
                    .collect();
                if !left.is_empty() && reachable.len() * 2 <= left.len() {
                    return Err(format!(
                        "group {}: removing node {node} would leave voters {left:?}, of which \
                         only {reachable:?} answer this leader: the group could not commit \
                         until the others return; bring them back (or remove a node that is \
                         down) first",
                        req.group
                    ));
                }
                replica
                    .group()
                    .remove_member(node)
                    .await
                    .map_err(|e| format!("group {}: removing node {node}: {e}", req.group))?;
                tracing::warn!(group = req.group, node, "replica removed from the group");
                Ok(())
            }
            Change::Add => {
                if m.voters.contains(&node) {
                    return Err(format!(
                        "group {}: node {node} is already a voter; to replace its data, remove it first",
                        req.group
                    ));
                }
                let Some(addrs) = self.core.peers().get(&node) else {
                    return Err(format!(
                        "group {}: node {node} is not in this node's [[nodes]] table",
                        req.group
                    ));
                };
                let catch_up = match req.catch_up_ms {
                    0 => DEFAULT_CATCH_UP,
                    ms => std::time::Duration::from_millis(ms),
                };
                replica
                    .add_replica(node, addrs.raft.clone(), catch_up)
                    .await
                    .map_err(|e| format!("group {}: {e}", req.group))?;
                Ok(())
            }
        }
    }
}

fn reply(r: Result<(), String>) -> Response<pb::AdminReply> {
    Response::new(pb::AdminReply {
        error: r.err().unwrap_or_default(),
    })
}

#[tonic::async_trait]
impl Admin for AdminServer {
    async fn upsert_topic(
        &self,
        req: Request<pb::TopicSpec>,
    ) -> Result<Response<pb::AdminReply>, tonic::Status> {
        let t = req.into_inner();
        if !names::stored_topic_ok(&t.name) {
            return Ok(reply(Err(format!(
                "illegal topic name {:?}: use [a-zA-Z0-9_|-], ns%name in namespace ns",
                t.name
            ))));
        }
        // queues 0 and no kind: only the retention age changes.
        let age_only = t.queues == 0 && t.kind.is_empty();
        if age_only && t.retention_ms.is_none() {
            return Ok(reply(Err(
                "nothing to change: give queues and a kind, or a retention age".into(),
            )));
        }
        if !age_only && (t.queues == 0 || t.queues > 1024) {
            return Ok(reply(Err(format!(
                "queues must be 1..=1024, got {}",
                t.queues
            ))));
        }
        let kind = if age_only {
            None
        } else {
            match parse_topic_kind(&t.kind) {
                Some(k) => Some(k),
                None => {
                    return Ok(reply(Err(format!(
                        "unknown topic kind {:?} (normal, fifo, delay, transaction, mixed)",
                        t.kind
                    ))));
                }
            }
        };
        let retention = match t.retention_ms {
            None => None,
            Some(0) => Some(None),
            Some(ms) if (limits::MIN_TOPIC_AGE_MS..=limits::MAX_TOPIC_AGE_MS).contains(&ms) => {
                Some(Some(ms))
            }
            Some(ms) => {
                return Ok(reply(Err(format!(
                    "retention {ms} ms is not between {} ms and 100 years (0: the cluster's)",
                    limits::MIN_TOPIC_AGE_MS
                ))));
            }
        };
        let name = t.name.clone();
        let mut r = Ok(());
        if let Some(kind) = kind {
            let cmd = Command::UpsertTopic(TopicConfig {
                name: t.name,
                queues: t.queues,
                kind,
            });
            r = self.on_every_group(cmd).await;
        }
        if let (Ok(()), Some(max_age_ms)) = (&r, retention) {
            r = self
                .on_every_group(Command::TopicRetention(TopicRetention {
                    topic: name,
                    max_age_ms,
                }))
                .await;
        }
        Ok(reply(r))
    }

    async fn upsert_group(
        &self,
        req: Request<pb::GroupSpec>,
    ) -> Result<Response<pb::AdminReply>, tonic::Status> {
        let g = req.into_inner();
        if !names::stored_group_ok(&g.name) {
            return Ok(reply(Err(format!(
                "illegal group name {:?}: use [a-zA-Z0-9_|-], ns%name in namespace ns",
                g.name
            ))));
        }
        if g.max_delivery_attempts == 0
            || g.max_delivery_attempts > crate::limits::MAX_DELIVERY_ATTEMPTS
        {
            return Ok(reply(Err(format!(
                "max delivery attempts must be 1..={}",
                crate::limits::MAX_DELIVERY_ATTEMPTS
            ))));
        }
        if g.retry_backoff_ms.len() > crate::limits::MAX_BACKOFF_STEPS {
            return Ok(reply(Err(format!(
                "at most {} retry backoff steps",
                crate::limits::MAX_BACKOFF_STEPS
            ))));
        }
        let steps = match g.exponential {
            Some(_) if !g.retry_backoff_ms.is_empty() => {
                return Ok(reply(Err(
                    "give backoff steps or an exponential backoff, not both".into(),
                )));
            }
            Some(e) => {
                if e.initial_ms == 0
                    || e.max_ms < e.initial_ms
                    || e.max_ms > limits::MAX_BACKOFF_MS
                    || !(1.0..=100.0).contains(&e.multiplier)
                {
                    return Ok(reply(Err(format!(
                        "exponential backoff: the initial delay must be above 0 and at most the \
                         maximum, the maximum at most {} h, and the multiplier 1 to 100 (got {} \
                         ms, {} ms, {})",
                        limits::MAX_BACKOFF_MS / 3_600_000,
                        e.initial_ms,
                        e.max_ms,
                        e.multiplier
                    ))));
                }
                // One step per retry (the last repeats).
                let count = (g.max_delivery_attempts as usize)
                    .saturating_sub(1)
                    .clamp(1, crate::limits::MAX_BACKOFF_STEPS);
                GroupConfig::exponential_steps(e.initial_ms, e.max_ms, e.multiplier, count)
            }
            None => g.retry_backoff_ms,
        };
        if let Some(s) = steps
            .iter()
            .find(|s| **s == 0 || **s > limits::MAX_BACKOFF_MS)
        {
            return Ok(reply(Err(format!(
                "a backoff step of {s} ms: each must be 1 ms to {} h",
                limits::MAX_BACKOFF_MS / 3_600_000
            ))));
        }
        let mut cfg = GroupConfig::with_defaults(g.name);
        cfg.max_delivery_attempts = g.max_delivery_attempts;
        cfg.fifo = g.fifo;
        if !steps.is_empty() {
            cfg.retry_backoff_ms = steps;
        }
        Ok(reply(self.on_every_group(Command::UpsertGroup(cfg)).await))
    }

    async fn add_replica(
        &self,
        req: Request<pb::ReplicaChange>,
    ) -> Result<Response<pb::AdminReply>, tonic::Status> {
        Ok(reply(self.change_replicas(req, Change::Add).await))
    }

    async fn remove_replica(
        &self,
        req: Request<pb::ReplicaChange>,
    ) -> Result<Response<pb::AdminReply>, tonic::Status> {
        Ok(reply(self.change_replicas(req, Change::Remove).await))
    }

    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, tonic::Status> {
        let mut replicas = Vec::new();
        let mut topics = Vec::new();
        let mut groups: std::collections::BTreeMap<String, pb::GroupStatus> =
            std::collections::BTreeMap::new();
        for g in self.core.groups() {
            let m = g.replica.metrics();
            let segs = g.replica.group().log().segments();
            replicas.push(pb::ReplicaStatus {
                group: m.group.0,
                node: m.node,
                role: format!("{:?}", m.role).to_lowercase(),
                term: m.term.0,
                leader: m.leader.unwrap_or(0),
                last_log: m.last_log.map_or(0, |i| i.0),
                committed: m.committed.map_or(0, |i| i.0),
                applied: m.applied.map_or(0, |i| i.0),
                log_start: g.replica.read(|s| s.log_start),
                segments: segs.len() as u64,
                log_bytes: segs.iter().map(|s| s.bytes).sum(),
                retention_note: g.replica.retention_note(),
                voters: m.voters.iter().copied().collect(),
                learners: m.learners.iter().copied().collect(),
            });
            // Under the state lock only copy what is needed; dedupe and build outside it, so
            // a status read costs apply O(topics x queues) lookups and nothing quadratic.
            let (ts, gs) = g.replica.read(|s| {
                let ts: Vec<(TopicConfig, Vec<u64>, Vec<u64>, Option<u64>)> = s
                    .topics
                    .values()
                    .map(|t| {
                        let ends = (0..t.queues)
                            .map(|q| s.queue(&t.name, q).map_or(0, |c| c.end()))
                            .collect();
                        let starts = (0..t.queues)
                            .map(|q| s.queue(&t.name, q).map_or(0, |c| c.start()))
                            .collect();
                        let age = s.topic_max_age_ms.get(&t.name).copied();
                        (t.clone(), ends, starts, age)
                    })
                    .collect();
                (ts, s.groups.values().cloned().collect::<Vec<_>>())
            });
            for (t, queue_ends, queue_starts, retention_ms) in ts {
                topics.push(pb::TopicStatus {
                    name: t.name,
                    queues: t.queues,
                    kind: topic_kind_name(t.kind).into(),
                    queue_ends,
                    queue_starts,
                    retention_ms,
                });
            }
            for c in gs {
                groups.entry(c.name.clone()).or_insert(pb::GroupStatus {
                    name: c.name,
                    max_delivery_attempts: c.max_delivery_attempts,
                    fifo: c.fifo,
                });
            }
        }
        let (sends_refused, disk_free_bytes) = self.core.storage.report();
        Ok(Response::new(pb::StatusReply {
            replicas,
            topics,
            groups: groups.into_values().collect(),
            sends_refused,
            disk_free_bytes,
        }))
    }

    async fn transactions(
        &self,
        req: Request<pb::TxListRequest>,
    ) -> Result<Response<pb::TxListReply>, tonic::Status> {
        let req = req.into_inner();
        let limit = match req.limit {
            0 => 1000,
            n => n.min(100_000),
        } as usize;
        let mut out = pb::TxListReply::default();
        for g in self.core.groups() {
            let (list, counts) = g.replica.read(|s| {
                let list: Vec<_> = s
                    .txns
                    .pending()
                    .filter(|(_, p)| req.topic.is_empty() || p.topic == req.topic)
                    .take(limit)
                    .map(|(k, p)| (*k, p.clone()))
                    .collect();
                let t = &s.txns;
                let counts = pb::TxGroupCounts {
                    group: g.id,
                    pending: t.len() as u64,
                    committed: t.committed,
                    rolled_back: t.rolled_back,
                    discarded: t.discarded,
                    checks: t.checks,
                };
                (list, counts)
            });
            out.groups.push(counts);
            for (key, p) in list {
                // The message id is in the log, not the state (which keeps a hash of it).
                let at = crate::state::consume_queue::CqEntry::at(key.log_index, key.pos, p.len);
                let message_id = g
                    .replica
                    .read_message(&at)
                    .map_or_else(|e| format!("(unreadable: {e})"), |m| m.message_id);
                out.pending.push(pb::PendingTx {
                    group: g.id,
                    transaction_id: crate::service::transaction::transaction_id(g.id, &key),
                    topic: p.topic,
                    message_id,
                    queue: p.queue.0,
                    stored_ms: p.stored_ms,
                    next_check_ms: p.next_check_ms,
                    checks: p.checks,
                    parked: p.parked,
                });
            }
        }
        Ok(Response::new(out))
    }

    async fn reset_offset(
        &self,
        req: Request<pb::ResetSpec>,
    ) -> Result<Response<pb::ResetReply>, tonic::Status> {
        let r = req.into_inner();
        Ok(Response::new(match self.reset(r).await {
            Ok(moved) => pb::ResetReply {
                error: String::new(),
                moved,
            },
            Err(error) => pb::ResetReply {
                error,
                moved: Vec::new(),
            },
        }))
    }

    async fn resolve_transaction(
        &self,
        req: Request<pb::TxResolve>,
    ) -> Result<Response<pb::AdminReply>, tonic::Status> {
        let r = req.into_inner();
        Ok(reply(
            crate::service::transaction::resolve(&self.core, &r.transaction_id, r.commit).await,
        ))
    }
}
