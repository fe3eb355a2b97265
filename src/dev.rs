//! `raftmq dev`: a nameserver and three broker nodes in one process, hosting one 3-replica
//! group, on loopback. Node 1 serves the v2 endpoint on `--listen` (nodes 2 and 3 on the next
//! two ports); every node serves every request, forwarding to the leader.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::config::GroupPlan;
use broker::config::NodeConfig;
use broker::core::BrokerSettings;
use broker::core::NodeAddrs;
use broker::node::Node;
use raft_store::disk::RealDisk;
use raft_store::log::FlushMode;
use raftmq_proto::auth::ClusterKey;

/// What `raftmq dev` runs.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Data directory; node `i` lives in `<data_dir>/n<i>`.
    pub data_dir: PathBuf,
    /// Node 1's v2 endpoint (nodes 2 and 3 take the next ports).
    pub listen: SocketAddr,
    /// First Raft port (nodes use this and the next two).
    pub raft_port: u16,
    /// Where to run the nameserver, if at all.
    pub nameserver: Option<SocketAddr>,
    /// Create topics and groups on first use.
    pub auto_create: bool,
    /// The cluster credential's key the three nodes and the nameserver share.
    pub cluster_key: ClusterKey,
    /// Most long polls per node.
    pub max_long_polls: usize,
    /// Most Telemetry sessions per node.
    pub max_telemetry_sessions: usize,
    /// Transaction check-backs (`--tx-check-interval-secs`).
    pub transactions: broker::checkback::TxSettings,
    /// Refuse sends below this many MiB free on the data directory's disk (0: never).
    pub min_free_mb: u64,
    /// How long messages are kept.
    pub retention: broker::retention::RetentionSettings,
    /// Log segment size, bytes.
    pub segment_bytes: u64,
}

/// A fresh random cluster key (dev mode needs no configuration; nothing outside the process
/// can speak to its internal ports).
pub fn random_key() -> anyhow::Result<ClusterKey> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the cluster secret")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ClusterKey::new(&secret).map_err(anyhow::Error::msg)
}

/// The three nodes' configurations.
pub fn node_configs(o: &DevOptions) -> Vec<NodeConfig> {
    let host = o.listen.ip();
    let peers: BTreeMap<u64, NodeAddrs> = (1..=3u16)
        .map(|i| {
            (
                i as u64,
                NodeAddrs {
                    raft: SocketAddr::new(host, o.raft_port + i - 1).to_string(),
                    client: SocketAddr::new(host, o.listen.port() + i - 1).to_string(),
                },
            )
        })
        .collect();
    (1..=3u16)
        .map(|i| NodeConfig {
            node_id: i as u64,
            data_dir: o.data_dir.join(format!("n{i}")),
            listen: SocketAddr::new(host, o.listen.port() + i - 1),
            raft_listen: SocketAddr::new(host, o.raft_port + i - 1),
            peers: peers.clone(),
            groups: vec![GroupPlan {
                id: 1,
                name: "raftmq-g1".into(),
                members: vec![1, 2, 3],
                preferred_leader: Some(1),
            }],
            nameservers: o.nameserver.iter().map(|a| a.to_string()).collect(),
            register_interval: Duration::from_secs(1),
            flush: FlushMode::Sync,
            heartbeat: Duration::from_millis(50),
            election: (Duration::from_millis(200), Duration::from_millis(400)),
            shutdown_drain: Duration::from_millis(200),
            preferred_leader_check: Duration::from_secs(2),
            broker: BrokerSettings {
                auto_create: o.auto_create,
                limits: broker::limits::ClientLimits {
                    max_long_polls: o.max_long_polls,
                    max_telemetry_sessions: o.max_telemetry_sessions,
                    ..Default::default()
                },
                min_free_bytes: o.min_free_mb << 20,
                retention: o.retention.clone(),
                segment_bytes: o.segment_bytes,
                transactions: o.transactions.clone(),
                ..BrokerSettings::default()
            },
            cluster_key: o.cluster_key.clone(),
        })
        .collect()
}

/// Runs until `shutdown`, then stops every node cleanly.
pub async fn run(
    o: DevOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (ns_stop, ns_rx) = tokio::sync::oneshot::channel::<()>();
    let ns = o.nameserver.map(|addr| {
        tokio::spawn(nameserver::run(
            addr,
            Duration::from_secs(3),
            o.cluster_key.clone(),
            async move {
                let _ = ns_rx.await;
            },
        ))
    });
    let mut nodes = Vec::new();
    for cfg in node_configs(&o) {
        let dir = cfg.data_dir.clone();
        nodes.push(
            Node::start(cfg, Arc::new(RealDisk::new()))
                .await
                .with_context(|| format!("starting the node in {}", dir.display()))?,
        );
    }
    // A replica that stops by itself (a storage failure) ends the process with an error, so a
    // supervisor restarts it, rather than leaving it to answer "not the leader" for ever.
    let failed = futures::future::select_all(nodes.iter().map(|n| Box::pin(n.failed_replica())));
    let failure = tokio::select! {
        _ = shutdown => None,
        (why, _, _) = failed => Some(why),
    };
    // Followers first would make the leader hand over to a stopping node; stop the leader of
    // the group last instead, so its followers are gone quickly and it does not wait on them.
    nodes.sort_by_key(|n| n.core().groups().any(|g| g.replica.is_leader()));
    for n in nodes {
        let stopped = n.stop().await;
        if failure.is_none() {
            stopped?;
        }
    }
    let _ = ns_stop.send(());
    if let Some(ns) = ns {
        ns.await?.map_err(anyhow::Error::msg)?;
    }
    match failure {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(()),
    }
}
