//! One broker node: its replicas, the Raft/forwarding listener, the v2 and admin listener,
//! registration with the nameservers, handing leadership back to preferred nodes, and a
//! graceful stop (hand leadership over, keep forwarding for a moment, then close).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::Weak;
use std::time::Duration;

use raft_store::disk::Disk;
use raft_store::group::GroupConfig;
use raft_store::group::Role;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::types::GroupId;
use raftmq_proto::admin::admin_server::AdminServer as AdminGrpc;
use raftmq_proto::forward::forward_server::ForwardServer as ForwardGrpc;
use raftmq_proto::nameserver as ns;
use raftmq_proto::nameserver::registry_client::RegistryClient;
use raftmq_proto::v2::messaging_service_server::MessagingServiceServer;
use tokio::sync::watch;
use tonic::transport::Endpoint;

use crate::admin::AdminServer;
use crate::batcher::BatchConfig;
use crate::config::NodeConfig;
use crate::core::BrokerCore;
use crate::core::HostedGroup;
use crate::error::BrokerError;
use crate::error::Result;
use crate::forward::ForwardServer;
use crate::listener;
use crate::listener::ListenLimits;
use crate::replica::Replica;
use crate::service::MessagingServer;
use crate::service::convert::topic_kind_name;

/// Largest gRPC message accepted: bodies up to 4 MiB plus headers, with room (tonic's 4 MiB
/// default would reject a 4 MiB body).
pub const MAX_GRPC_MESSAGE: usize = 130 << 20;

/// A started node, ready to serve until [`Node::stop`].
pub struct Node {
    cfg: NodeConfig,
    core: Arc<BrokerCore>,
    stop_clients: watch::Sender<bool>,
    stop_internal: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client_server: ServerTask,
    internal_server: ServerTask,
}

async fn until_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Node {
    /// Opens (recovering) the replicas this node hosts and starts serving.
    pub async fn start(cfg: NodeConfig, disk: Arc<dyn Disk>) -> Result<Node> {
        let registry = Registry::new(cfg.cluster_key.clone());
        let channels = Channels::new(cfg.cluster_key.clone());
        let hosted = open_replicas(&cfg, disk.clone(), &registry, &channels).await?;

        // Raft transport and forwarding share one listener; forwarding needs the core, which
        // needs the replicas, so its slot is filled once the core exists.
        let slot = Arc::new(OnceLock::new());
        let (stop_internal, internal_server) = serve_internal(&cfg, &registry, slot.clone());

        let core = BrokerCore::new(
            cfg.broker.clone(),
            cfg.node_id,
            cfg.peers.clone(),
            hosted,
            cfg.cluster_key.clone(),
        );
        let _ = slot.set(Arc::downgrade(&core));

        let (stop_clients, client_server) = serve_clients(&cfg, &core);

        // A listener that cannot bind (address in use) ends its task at once: fail the start
        // rather than run a node nobody can reach.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (what, h) in [("raft", &internal_server), ("client", &client_server)] {
            if h.is_finished() {
                let _ = stop_internal.send(true);
                let _ = stop_clients.send(true);
                return Err(crate::error::BrokerError::Unavailable(format!(
                    "the {what} listener of node {} stopped at start (address in use?)",
                    cfg.node_id
                )));
            }
        }
        let mut tasks = vec![
            tokio::spawn(register_loop(
                core.clone(),
                cfg.nameservers.clone(),
                cfg.register_interval,
                cfg.cluster_key.clone(),
            )),
            tokio::spawn(preferred_leader_loop(
                core.clone(),
                cfg.preferred_leader_check,
            )),
            tokio::spawn(crate::storage_guard::watch(
                Arc::downgrade(&core),
                disk,
                cfg.data_dir.clone(),
                // A statvfs is cheap; a short period bounds how far a burst of sends can
                // overshoot the floor between two readings.
                Duration::from_millis(100),
            )),
        ];
        let sharing = core.groups().count() as u64;
        for g in core.groups() {
            tasks.push(tokio::spawn(crate::ticker::run(
                Arc::downgrade(&g.replica),
                core.settings.dedup,
            )));
            tasks.push(tokio::spawn(crate::checkback::run(
                Arc::downgrade(&core),
                g.id,
            )));
            let c = Arc::downgrade(&core);
            tasks.push(tokio::spawn(crate::retention::run(
                Arc::downgrade(&g.replica),
                cfg.broker.retention.clone(),
                move || c.upgrade().and_then(|c| c.storage.free_bytes()),
                sharing,
            )));
        }
        tracing::info!(node = cfg.node_id, listen = %cfg.listen, raft = %cfg.raft_listen, "broker node started");
        Ok(Node {
            cfg,
            core,
            stop_clients,
            stop_internal,
            tasks,
            client_server,
            internal_server,
        })
    }

    /// The node's core.
    pub fn core(&self) -> &Arc<BrokerCore> {
        &self.core
    }

    /// Resolves when one of this node's replicas has stopped by itself, naming it and why: a
    /// storage failure (the log poisons itself on a failed fsync or write and openraft shuts
    /// the replica down; a restart recovers from the disk, and everything acknowledged is on a
    /// majority), or the replica started empty while its peers still count it as a voter that
    /// acknowledged entries (it lost its data; the reason says how to rejoin). The process
    /// should then exit non-zero.
    pub async fn failed_replica(&self) -> String {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            for g in self.core.groups() {
                if let Some(why) = g.replica.group().stopped_reason() {
                    return format!(
                        "node {}: the replica of group {} stopped {why}",
                        self.core.node_id(),
                        g.id
                    );
                }
            }
        }
    }

    /// Stops gracefully: hands leadership of every group it leads to a caught-up follower,
    /// keeps serving (requests are forwarded to the new leaders, registrations catch up) for
    /// the drain time, then closes the client listener, stops the replicas and the transport.
    pub async fn stop(self) -> Result<()> {
        // From now on registrations name no group, so nameservers drop this node from routes
        // at the next registration instead of after their TTL; and for the whole drain this
        // node hands back any leadership it gets: a peer's preferred-leader check may hand a
        // group to it while it drains, and clients would then be routed to a node about to
        // close its listener (found by tests/cluster.rs SIGTERM: connection refused after
        // the drain).
        self.core.set_draining();
        let until = tokio::time::Instant::now() + self.cfg.shutdown_drain;
        loop {
            for g in self.core.groups() {
                if g.replica.is_leader() {
                    g.replica.step_down().await;
                }
            }
            if tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.stop_clients.send(true);
        // Long polls in flight are cut short rather than waited for.
        let _ = tokio::time::timeout(Duration::from_secs(3), self.client_server).await;
        for t in &self.tasks {
            t.abort();
        }
        for g in self.core.groups() {
            g.replica.shutdown().await?;
        }
        let _ = self.stop_internal.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.internal_server).await;
        tracing::info!(node = self.cfg.node_id, "broker node stopped");
        Ok(())
    }
}

/// A listener's task: `Err` says why it stopped serving.
type ServerTask = tokio::task::JoinHandle<std::result::Result<(), String>>;

/// Opens (recovering) a replica of every group this node is a member of.
async fn open_replicas(
    cfg: &NodeConfig,
    disk: Arc<dyn Disk>,
    registry: &Registry,
    channels: &Channels,
) -> Result<Vec<HostedGroup>> {
    let mut hosted = Vec::new();
    for g in cfg
        .groups
        .iter()
        .filter(|g| g.members.contains(&cfg.node_id))
    {
        let members: BTreeMap<u64, String> = g
            .members
            .iter()
            .map(|m| (*m, cfg.peers[m].raft.clone()))
            .collect();
        let mut gc = GroupConfig::new(
            GroupId(g.id),
            cfg.node_id,
            members,
            cfg.data_dir.join(format!("group-{}", g.id)),
        );
        gc.heartbeat_interval = cfg.heartbeat;
        gc.election_timeout = cfg.election;
        gc.log.flush = cfg.flush;
        gc.log.segment_bytes = cfg.broker.segment_bytes;
        gc.log.verify_sealed_on_open = cfg.broker.verify_log_on_start;
        gc.join = cfg.broker.rejoin;
        gc.seed_dirs = vec![crate::replica::CQ_DIR.into()];
        gc.snapshot_every = cfg.broker.snapshot_every;
        // Small segments (tests) still get a few sparse-index points each.
        gc.log.index_interval_bytes = gc.log.index_interval_bytes.min(gc.log.segment_bytes / 4);
        let replica =
            Replica::start(gc, disk.clone(), registry, channels, BatchConfig::default()).await?;
        hosted.push(HostedGroup {
            id: g.id,
            name: g.name.clone(),
            replica,
            preferred_leader: g.preferred_leader,
            configured_members: g.members.clone(),
        });
    }
    Ok(hosted)
}

/// Starts the Raft transport and forwarding listener; forwarding serves the core `slot` holds
/// once it is set. Returns its stop switch and task.
fn serve_internal(
    cfg: &NodeConfig,
    registry: &Registry,
    slot: Arc<OnceLock<Weak<BrokerCore>>>,
) -> (watch::Sender<bool>, ServerTask) {
    let (stop_internal, rx) = watch::channel(false);
    // Peers only: the credential's head is checked before a body is read.
    let internal_limits = ListenLimits::default();
    let internal = listener::internal_builder(&internal_limits, cfg.cluster_key.clone())
        .add_service(registry.service(MAX_GRPC_MESSAGE))
        .add_service(
            ForwardGrpc::new(ForwardServer::new(slot, cfg.cluster_key.clone()))
                .max_decoding_message_size(MAX_GRPC_MESSAGE)
                .max_encoding_message_size(MAX_GRPC_MESSAGE),
        );
    let raft_listen = cfg.raft_listen;
    let internal_server = tokio::spawn(async move {
        crate::serve_limited!(internal, raft_listen, internal_limits, until_true(rx))
            .map_err(|e| format!("raft listener {e}"))
    });
    (stop_internal, internal_server)
}

/// Starts the v2 and admin listener. Returns its stop switch and task.
fn serve_clients(cfg: &NodeConfig, core: &Arc<BrokerCore>) -> (watch::Sender<bool>, ServerTask) {
    let (stop_clients, rx) = watch::channel(false);
    let client_limits = ListenLimits {
        max_connections: cfg.broker.limits.max_connections,
        max_streams: cfg.broker.limits.max_streams_per_connection,
    };
    // A request larger than a full batch (plus room for its fields) is refused when its
    // length prefix arrives, before it is buffered; replies are bounded by
    // max_reply_bytes.
    let client_message = cfg.broker.limits.max_batch_bytes + (8 << 20);
    let clients = listener::builder(&client_limits)
        .add_service(
            MessagingServiceServer::new(MessagingServer::new(core.clone()))
                .max_decoding_message_size(client_message)
                .max_encoding_message_size(MAX_GRPC_MESSAGE),
        )
        .add_service(AdminGrpc::new(AdminServer::new(core.clone())));
    let listen = cfg.listen;
    let client_server = tokio::spawn(async move {
        crate::serve_limited!(clients, listen, client_limits, until_true(rx))
            .map_err(|e| format!("client listener {e}"))
    });
    (stop_clients, client_server)
}

/// Runs a node until `shutdown` completes, then stops it gracefully.
pub async fn run(
    cfg: NodeConfig,
    disk: Arc<dyn Disk>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let node = Node::start(cfg, disk).await?;
    tokio::select! {
        _ = shutdown => node.stop().await,
        why = node.failed_replica() => {
            tracing::error!(%why, "a replica failed; stopping this node");
            let _ = node.stop().await;
            Err(BrokerError::ReplicaFailed(why))
        }
    }
}

/// What this node tells nameservers.
pub fn registration(core: &BrokerCore) -> ns::RegisterRequest {
    let me = core.node_id();
    let groups = core
        .groups()
        .filter(|_| !core.draining())
        .map(|g| {
            let m = g.replica.metrics();
            let (topics, consumer_groups) = g.replica.read(|s| {
                let topics = s
                    .topics
                    .values()
                    .map(|t| ns::TopicInfo {
                        name: t.name.clone(),
                        queues: t.queues,
                        kind: topic_kind_name(t.kind).into(),
                    })
                    .collect();
                let groups = s
                    .groups
                    .values()
                    .map(|c| ns::ConsumerGroupInfo {
                        name: c.name.clone(),
                        max_delivery_attempts: c.max_delivery_attempts,
                        fifo: c.fifo,
                        retry_backoff_ms: c.retry_backoff_ms.clone(),
                    })
                    .collect();
                (topics, groups)
            });
            ns::GroupReport {
                group: g.id,
                name: g.name.clone(),
                role: match m.role {
                    Role::Leader => "leader",
                    Role::Follower => "follower",
                    _ => "other",
                }
                .into(),
                term: m.term.0,
                leader: m.leader.unwrap_or(0),
                members: core
                    .members(g.id)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| {
                        core.peers().get(n).map(|p| ns::Member {
                            node: *n,
                            client_addr: p.client.clone(),
                        })
                    })
                    .collect(),
                topics,
                consumer_groups,
            }
        })
        .collect();
    ns::RegisterRequest {
        node: me,
        client_addr: core
            .peers()
            .get(&me)
            .map(|p| p.client.clone())
            .unwrap_or_default(),
        groups,
        auto_create: core.settings.auto_create,
        default_queues: core.settings.default_queues,
    }
}

/// Registers with every nameserver every `every`; a slow or dead nameserver never delays the
/// others.
async fn register_loop(
    core: Arc<BrokerCore>,
    nameservers: Vec<String>,
    every: Duration,
    key: raftmq_proto::auth::ClusterKey,
) {
    let clients: Vec<(String, Option<RegistryClient<tonic::transport::Channel>>)> = nameservers
        .into_iter()
        .map(|a| {
            let c = Endpoint::from_shared(format!("http://{a}")).ok().map(|e| {
                RegistryClient::new(e.connect_timeout(Duration::from_millis(500)).connect_lazy())
            });
            (a, c)
        })
        .collect();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let req = registration(&core);
        for (addr, c) in &clients {
            let Some(c) = c.clone() else { continue };
            let mut c =
                c.max_encoding_message_size(raftmq_proto::nameserver::MAX_REGISTRATION_BYTES);
            // Signed over the encoded registration: a nameserver takes it only from a holder
            // of the cluster secret, and only for the node that signed it.
            let body = prost::Message::encode_to_vec(&req);
            let mut signed = tonic::Request::new(req.clone());
            key.attach(
                &mut signed,
                raftmq_proto::nameserver::REGISTER_METHOD,
                core.node_id(),
                raft_store::rt::wall_ms(),
                &body,
            );
            let addr = addr.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(every, c.register(signed)).await {
                    Ok(Ok(r)) if !r.get_ref().error.is_empty() => {
                        tracing::warn!(nameserver = %addr, error = %r.get_ref().error, "registration refused")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(nameserver = %addr, error = %e, "registration failed")
                    }
                    Err(_) => tracing::debug!(nameserver = %addr, "registration timed out"),
                }
            });
        }
    }
}

/// Hands leadership back to a group's preferred node once it has been caught up for two checks
/// in a row (so a node that just restarted is not handed work it cannot do yet).
async fn preferred_leader_loop(core: Arc<BrokerCore>, every: Duration) {
    let mut caught_up: BTreeMap<u64, u32> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for g in core.groups() {
            let Some(p) = g.preferred_leader else {
                continue;
            };
            if p == core.node_id() || !g.replica.is_leader() {
                caught_up.remove(&g.id);
                continue;
            }
            let m = g.replica.metrics();
            let matched = m.replication.get(&p).copied().flatten();
            if m.last_log.is_some() && matched == m.last_log {
                let n = caught_up.entry(g.id).or_default();
                *n += 1;
                if *n >= 2 {
                    tracing::info!(
                        group = g.id,
                        to = p,
                        "handing leadership back to the preferred node"
                    );
                    if let Err(e) = g.replica.group().transfer_leadership(p).await {
                        tracing::warn!(group = g.id, error = %e, "leadership transfer failed");
                    }
                    caught_up.remove(&g.id);
                }
            } else {
                caught_up.remove(&g.id);
            }
        }
    }
}
