//! The typed configuration of a broker node (`raftmq broker -c broker.toml`), parsed from TOML
//! and validated with errors that name the offending field.
//!
//! Every node of a cluster shares the `[[nodes]]` and `[[groups]]` tables; a node hosts a
//! replica of each group listing it among `members`.
//!
//! ```toml
//! node_id = 1
//! data_dir = "/var/lib/raftmq"
//! listen = "0.0.0.0:8081"            # RocketMQ v2 endpoint
//! advertise = "10.0.0.1:8081"        # optional; must be this node's [[nodes]] client address
//! raft_listen = "0.0.0.0:7001"       # Raft transport and forwarding
//! cluster_secret_file = "/etc/raftmq/cluster.secret"   # or cluster_secret = "..." (>= 16 chars)
//! nameservers = ["10.0.0.1:9876", "10.0.0.2:9876"]
//! flush = "sync"                     # "async" acknowledges before fsync (relaxed)
//!
//! [[nodes]]
//! id = 1
//! raft = "10.0.0.1:7001"
//! client = "10.0.0.1:8081"
//!
//! [[groups]]
//! id = 1
//! members = [1, 2, 3]
//! preferred_leader = 1
//! ```

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use raft_store::log::FlushMode;
use raftmq_proto::auth::ClusterKey;
use serde::Deserialize;

use crate::core::BrokerSettings;
use crate::core::NodeAddrs;

mod storage;

pub use storage::*;

fn default_true() -> bool {
    true
}
fn default_flush() -> String {
    "sync".into()
}
fn default_queues() -> u32 {
    4
}

/// A `[[nodes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeToml {
    /// Node id (unique, positive).
    pub id: u64,
    /// Raft transport address (`host:port`) other nodes connect to.
    pub raft: String,
    /// Client (v2) address routes give out.
    pub client: String,
}

/// A `[[groups]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupToml {
    /// Raft group id (unique, positive).
    pub id: u64,
    /// Broker name in routes (default `raftmq-g<id>`).
    pub name: Option<String>,
    /// Node ids of the replicas (an odd number, usually 3).
    pub members: Vec<u64>,
    /// Node that leads when it is healthy and caught up.
    pub preferred_leader: Option<u64>,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerToml {
    /// This node's id.
    pub node_id: u64,
    /// Where this node keeps its replicas.
    pub data_dir: PathBuf,
    /// RocketMQ v2 (and admin) listen address.
    pub listen: String,
    /// The client address routes give out for this node; when given it must be this node's
    /// `[[nodes]]` `client` entry (every node must agree on every address).
    pub advertise: Option<String>,
    /// The secret every node and nameserver of the cluster shares (internal RPCs carry an HMAC
    /// made with it). Prefer `cluster_secret_file`.
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    pub cluster_secret_file: Option<PathBuf>,
    /// Raft transport (and forwarding) listen address.
    pub raft_listen: String,
    /// Nameservers to register with.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// `sync` (default) or `async`.
    #[serde(default = "default_flush")]
    pub flush: String,
    /// Create topics and groups on first use.
    #[serde(default = "default_true")]
    pub auto_create: bool,
    /// Queues per group of an auto-created topic.
    #[serde(default = "default_queues")]
    pub default_queues: u32,
    /// Raft timing.
    #[serde(default)]
    pub timeouts: TimeoutsToml,
    /// Client limits.
    #[serde(default)]
    pub limits: crate::limits::ClientLimits,
    /// Disk space.
    #[serde(default)]
    pub storage: StorageToml,
    /// How long messages are kept.
    #[serde(default)]
    pub retention: RetentionToml,
    /// Transaction check-backs.
    #[serde(default)]
    pub transactions: TransactionsToml,
    /// The idempotent producer's window.
    #[serde(default)]
    pub dedup: DedupToml,
    /// Every node of the cluster.
    pub nodes: Vec<NodeToml>,
    /// Every Raft group of the cluster.
    pub groups: Vec<GroupToml>,
}

/// One group as a node runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Raft group id.
    pub id: u64,
    /// Broker name in routes.
    pub name: String,
    /// Node ids of the replicas.
    pub members: Vec<u64>,
    /// Node that should lead.
    pub preferred_leader: Option<u64>,
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub node_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// v2 listen address.
    pub listen: SocketAddr,
    /// Raft listen address.
    pub raft_listen: SocketAddr,
    /// Every node's addresses.
    pub peers: BTreeMap<u64, NodeAddrs>,
    /// Every group of the cluster (the node hosts those it is a member of).
    pub groups: Vec<GroupPlan>,
    /// Nameservers to register with.
    pub nameservers: Vec<String>,
    /// Registration period.
    pub register_interval: Duration,
    /// Log durability.
    pub flush: FlushMode,
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election: (Duration, Duration),
    /// Forwarding after stepping down on shutdown.
    pub shutdown_drain: Duration,
    /// How often a leader checks whether to hand leadership back to the preferred node.
    pub preferred_leader_check: Duration,
    /// Broker behaviour.
    pub broker: BrokerSettings,
    /// The cluster credential's key (internal RPCs are signed and checked with it).
    pub cluster_key: ClusterKey,
}

/// Reads a cluster secret from `secret` or `file` (exactly one), naming the key on error.
pub fn cluster_key(secret: Option<&str>, file: Option<&Path>) -> Result<ClusterKey, String> {
    let text = match (secret, file) {
        (Some(_), Some(_)) => {
            return Err("cluster_secret and cluster_secret_file: give one, not both".into());
        }
        (Some(s), None) => s.to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("cluster_secret_file: cannot read {}: {e}", f.display()))?,
        (None, None) => {
            return Err(
                "cluster_secret_file (or cluster_secret) is required: every node and \
                 nameserver of a cluster shares one secret of at least 16 characters, \
                 e.g. from `head -c 32 /dev/urandom | base64`"
                    .into(),
            );
        }
    };
    ClusterKey::new(&text).map_err(|e| format!("cluster_secret: {e}"))
}

/// The port of a `host:port` already checked by [`addr_ok`].
fn port_of(a: &str) -> Option<u16> {
    a.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// A listen address must be where this node's `[[nodes]]` entry says peers reach it: the same
/// port, and the same IP unless it listens on every interface or the entry names a host.
fn listen_matches(
    field: &str,
    listen: SocketAddr,
    entry_field: &str,
    entry: &str,
) -> Result<(), String> {
    if port_of(entry) != Some(listen.port()) {
        return Err(format!(
            "{field}: {listen} does not match this node's {entry_field} {entry:?} (ports differ)"
        ));
    }
    if let Ok(e) = entry.parse::<SocketAddr>()
        && !listen.ip().is_unspecified()
        && e.ip() != listen.ip()
    {
        return Err(format!(
            "{field}: {listen} does not match this node's {entry_field} {entry:?}"
        ));
    }
    Ok(())
}

fn addr_ok(field: &str, a: &str) -> Result<(), String> {
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("{field}: {a:?} is not host:port")),
    }
}

fn socket(field: &str, a: &str) -> Result<SocketAddr, String> {
    a.parse()
        .map_err(|_| format!("{field}: {a:?} is not an IP:port to listen on"))
}

impl BrokerToml {
    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Validates and converts.
    pub fn into_config(self) -> Result<NodeConfig, String> {
        let peers = node_addrs(&self.nodes)?;
        if !peers.contains_key(&self.node_id) {
            return Err(format!("node_id {} is not in [[nodes]]", self.node_id));
        }
        let groups = group_plans(&self.groups, &peers)?;
        if !groups.iter().any(|g| g.members.contains(&self.node_id)) {
            return Err(format!("node {} is a member of no group", self.node_id));
        }
        let flush = flush_mode(&self.flush)?;
        let t = &self.timeouts;
        t.check()?;
        if self.default_queues == 0 || self.default_queues > 1024 {
            return Err(format!(
                "default_queues: {} is outside 1..=1024",
                self.default_queues
            ));
        }
        for (i, ns) in self.nameservers.iter().enumerate() {
            addr_ok(&format!("nameservers[{i}]"), ns)?;
        }
        let (listen, raft_listen) = self.listen_addrs(&peers[&self.node_id])?;
        let cluster_key = cluster_key(
            self.cluster_secret.as_deref(),
            self.cluster_secret_file.as_deref(),
        )?;
        let broker = BrokerSettings {
            auto_create: self.auto_create,
            default_queues: self.default_queues,
            leader_wait: Duration::from_millis(t.leader_wait_ms),
            limits: self.limits.clone(),
            min_free_bytes: self
                .storage
                .min_free_mb
                .checked_mul(1 << 20)
                .ok_or_else(|| {
                    format!(
                        "storage.min_free_mb: {} is too large",
                        self.storage.min_free_mb
                    )
                })?,
            retention: crate::retention::RetentionSettings {
                delete_below_free: delete_below_free(
                    self.storage.delete_below_free_mb,
                    self.storage.min_free_mb,
                )?,
                ..self.retention.settings()?
            },
            transactions: self.transactions.settings()?,
            dedup: self.dedup.settings()?,
            segment_bytes: segment_bytes(self.storage.segment_mb)?,
            verify_log_on_start: self.storage.verify_log_on_start,
            snapshot_every: match self.storage.snapshot_every {
                n @ 1..=100_000_000 => n,
                n => {
                    return Err(format!(
                        "storage.snapshot_every: {n} is not between 1 and 100000000"
                    ));
                }
            },
            ..BrokerSettings::default()
        };
        broker.limits.validate()?;
        Ok(NodeConfig {
            node_id: self.node_id,
            data_dir: self.data_dir,
            listen,
            raft_listen,
            peers,
            groups,
            nameservers: self.nameservers,
            register_interval: Duration::from_secs(1),
            flush,
            heartbeat: Duration::from_millis(t.heartbeat_ms),
            election: (
                Duration::from_millis(t.election_min_ms),
                Duration::from_millis(t.election_max_ms),
            ),
            shutdown_drain: Duration::from_millis(t.shutdown_drain_ms),
            preferred_leader_check: Duration::from_secs(2),
            broker,
            cluster_key,
        })
    }

    /// The v2 and Raft listen addresses, checked against this node's `[[nodes]]` entry `me`
    /// (and `advertise`, if given).
    fn listen_addrs(&self, me: &NodeAddrs) -> Result<(SocketAddr, SocketAddr), String> {
        let listen = socket("listen", &self.listen)?;
        let raft_listen = socket("raft_listen", &self.raft_listen)?;
        let entry = format!("[[nodes]] id = {}", self.node_id);
        listen_matches("listen", listen, &format!("{entry} client"), &me.client)?;
        listen_matches(
            "raft_listen",
            raft_listen,
            &format!("{entry} raft"),
            &me.raft,
        )?;
        if let Some(a) = &self.advertise
            && a != &me.client
        {
            return Err(format!(
                "advertise: {a:?} differs from this node's {entry} client {:?}; routes use \
                 [[nodes]], so change it there (on every node)",
                me.client
            ));
        }
        Ok((listen, raft_listen))
    }
}

/// Every node's addresses, by id, from `[[nodes]]`.
fn node_addrs(nodes: &[NodeToml]) -> Result<BTreeMap<u64, NodeAddrs>, String> {
    let mut peers = BTreeMap::new();
    for n in nodes {
        if n.id == 0 {
            return Err("nodes: node id 0 is reserved".into());
        }
        addr_ok(&format!("nodes[{}].raft", n.id), &n.raft)?;
        addr_ok(&format!("nodes[{}].client", n.id), &n.client)?;
        let prev = peers.insert(
            n.id,
            NodeAddrs {
                raft: n.raft.clone(),
                client: n.client.clone(),
            },
        );
        if prev.is_some() {
            return Err(format!("nodes: node id {} appears twice", n.id));
        }
    }
    let raft_addrs: BTreeSet<&str> = nodes.iter().map(|n| n.raft.as_str()).collect();
    if raft_addrs.len() != nodes.len() {
        return Err("nodes: two nodes share a raft address".into());
    }
    Ok(peers)
}

/// Every group of the cluster from `[[groups]]`, checked against the nodes in `peers`.
fn group_plans(
    groups: &[GroupToml],
    peers: &BTreeMap<u64, NodeAddrs>,
) -> Result<Vec<GroupPlan>, String> {
    let mut plans = Vec::new();
    let mut ids = BTreeSet::new();
    for g in groups {
        if g.id == 0 || !ids.insert(g.id) {
            return Err(format!("groups: group id {} is 0 or appears twice", g.id));
        }
        let distinct: BTreeSet<u64> = g.members.iter().copied().collect();
        if distinct.len() != g.members.len() {
            return Err(format!(
                "groups[{}].members: {:?} names a node twice",
                g.id, g.members
            ));
        }
        if g.members.is_empty() || g.members.len() % 2 == 0 {
            return Err(format!(
                "groups[{}]: needs an odd number of members, has {}",
                g.id,
                g.members.len()
            ));
        }
        for m in &g.members {
            if !peers.contains_key(m) {
                return Err(format!("groups[{}]: member {m} is not in [[nodes]]", g.id));
            }
        }
        // Routes publish the name and send answers list it in a header: keep it plain.
        if let Some(n) = &g.name
            && (n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(format!(
                "groups[{}].name: {n:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                g.id
            ));
        }
        if let Some(p) = g.preferred_leader
            && !g.members.contains(&p)
        {
            return Err(format!(
                "groups[{}]: preferred_leader {p} is not a member",
                g.id
            ));
        }
        plans.push(GroupPlan {
            id: g.id,
            name: g
                .name
                .clone()
                .unwrap_or_else(|| format!("raftmq-g{}", g.id)),
            members: g.members.clone(),
            preferred_leader: g.preferred_leader,
        });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 2
data_dir = "/tmp/x"
listen = "127.0.0.2:8081"
raft_listen = "127.0.0.2:7001"
nameservers = ["127.0.0.1:9876"]
cluster_secret = "0123456789abcdef0123"

[[nodes]]
id = 1
raft = "127.0.0.1:7001"
client = "127.0.0.1:8081"
[[nodes]]
id = 2
raft = "127.0.0.2:7001"
client = "127.0.0.2:8081"
[[nodes]]
id = 3
raft = "127.0.0.3:7001"
client = "127.0.0.3:8081"

[[groups]]
id = 1
members = [1, 2, 3]
preferred_leader = 1
[[groups]]
id = 2
members = [1, 2, 3]
preferred_leader = 2
"#;

    #[test]
    fn a_good_file_parses() {
        let c = BrokerToml::parse(GOOD).unwrap().into_config().unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.groups[1].name, "raftmq-g2");
        assert_eq!(c.flush, FlushMode::Sync);
        // The documented keys are accepted: advertise (this node's client address) and
        // listening on every interface.
        let text = GOOD
            .replacen(
                "listen = \"127.0.0.2:8081\"",
                "listen = \"0.0.0.0:8081\"\nadvertise = \"127.0.0.2:8081\"",
                1,
            )
            .replacen(
                "raft_listen = \"127.0.0.2:7001\"",
                "raft_listen = \"0.0.0.0:7001\"",
                1,
            );
        BrokerToml::parse(&text).unwrap().into_config().unwrap();
        let text = GOOD.replacen(
            "[[groups]]\nid = 1",
            "[limits]\nmax_long_polls = 5\nmax_body_bytes = 1024\n\n[[groups]]\nid = 1",
            1,
        );
        let c = BrokerToml::parse(&text).unwrap().into_config().unwrap();
        assert_eq!(c.broker.limits.max_long_polls, 5);
        assert_eq!(c.broker.limits.max_body_bytes, 1024);
        assert!(!c.broker.verify_log_on_start);
        let text = GOOD.replacen(
            "[[groups]]\nid = 1",
            "[storage]\nverify_log_on_start = true\n\n[[groups]]\nid = 1",
            1,
        );
        let c = BrokerToml::parse(&text).unwrap().into_config().unwrap();
        assert!(c.broker.verify_log_on_start);
        assert_eq!(
            c.broker.limits.max_batch_bytes,
            BrokerSettings::default().limits.max_batch_bytes
        );
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "node_id = 2",
                "node_id = 9",
                "node_id 9 is not in [[nodes]]",
            ),
            (
                "preferred_leader = 2",
                "preferred_leader = 7",
                "preferred_leader 7 is not a member",
            ),
            (
                "members = [1, 2, 3]\npreferred_leader = 1",
                "members = [1, 2]",
                "odd number of members",
            ),
            (
                "listen = \"127.0.0.2:8081\"",
                "listen = \"nowhere\"",
                "listen",
            ),
            (
                "nameservers = [\"127.0.0.1:9876\"]",
                "nameservers = [\"x\"]",
                "nameservers[0]",
            ),
            (
                "data_dir = \"/tmp/x\"",
                "data_dir = \"/tmp/x\"\nflush = \"sometimes\"",
                "neither \"sync\" nor \"async\"",
            ),
            (
                "data_dir = \"/tmp/x\"",
                "data_dir = \"/tmp/x\"\nbogus = 1",
                "unknown field",
            ),
            // Found by the issue-10 review: two voters ran as a "three-member" group.
            (
                "members = [1, 2, 3]\npreferred_leader = 1",
                "members = [1, 1, 2]",
                "groups[1].members: [1, 1, 2] names a node twice",
            ),
            // Send answers list broker names in a space-separated header.
            (
                "members = [1, 2, 3]\npreferred_leader = 1",
                "members = [1, 2, 3]\npreferred_leader = 1\nname = \"a b\"",
                "groups[1].name: \"a b\" must be 1 to 64 letters",
            ),
            (
                "listen = \"127.0.0.2:8081\"",
                "listen = \"127.0.0.2:9999\"",
                "listen: 127.0.0.2:9999 does not match this node's [[nodes]] id = 2 client",
            ),
            (
                "raft_listen = \"127.0.0.2:7001\"",
                "raft_listen = \"127.0.0.5:7001\"",
                "raft_listen: 127.0.0.5:7001 does not match",
            ),
            (
                "listen = \"127.0.0.2:8081\"",
                "listen = \"127.0.0.2:8081\"\nadvertise = \"10.0.0.9:8081\"",
                "advertise: \"10.0.0.9:8081\" differs",
            ),
            (
                "cluster_secret = \"0123456789abcdef0123\"",
                "",
                "cluster_secret_file (or cluster_secret) is required",
            ),
            (
                "cluster_secret = \"0123456789abcdef0123\"",
                "cluster_secret = \"short\"",
                "cluster_secret: the cluster secret must have at least 16",
            ),
            (
                "cluster_secret = \"0123456789abcdef0123\"",
                "cluster_secret_file = \"/nonexistent/raftmq.secret\"",
                "cluster_secret_file: cannot read",
            ),
            (
                "[[groups]]\nid = 1",
                "[limits]\nmax_body_bytes = 0\n\n[[groups]]\nid = 1",
                "limits.max_body_bytes: 0 is outside",
            ),
            (
                "[[groups]]\nid = 1",
                "[limits]\nmax_body_bytes = 999999999\n\n[[groups]]\nid = 1",
                "limits.max_body_bytes: 999999999 is outside",
            ),
            (
                "[[groups]]\nid = 1",
                "[limits]\nmax_long_pols = 5\n\n[[groups]]\nid = 1",
                "unknown field `max_long_pols`",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = BrokerToml::parse(&text)
                .and_then(|t| t.into_config().map(|_| ()))
                .unwrap_err();
            assert!(err.contains(want), "{to:?}: {err}");
        }
    }
}
