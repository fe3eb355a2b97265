//! The fence's tasks (see [`crate::fence`]): asking the peers of a pristine replica what
//! they know of it until it may bootstrap, join or must stay out, and recording which members
//! acknowledged entries.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::InitializeError;
use openraft::errors::RaftError;

use crate::fence;
use crate::fence::Decision;
use crate::fence::Fence;
use crate::fence::Gate;
use crate::fence::ProbeReply;
use crate::group::GroupConfig;
use crate::network;
use crate::network::Channels;
use crate::types::Node;
use crate::types::NodeId;
use crate::types::Raft;

/// One round: asks every other member of `cfg`'s group, keeping the latest answer of each.
pub async fn ask_peers(
    cfg: &GroupConfig,
    channels: &Channels,
    replies: &mut BTreeMap<NodeId, ProbeReply>,
) {
    for (id, addr) in cfg.members.iter().filter(|(id, _)| **id != cfg.node_id) {
        match network::probe(
            channels,
            &cfg.net,
            (cfg.group, cfg.node_id),
            (*id, addr),
            cfg.election_timeout.1,
        )
        .await
        {
            Ok(r) => {
                replies.insert(*id, r);
            }
            Err(e) => tracing::debug!(group = %cfg.group, peer = id, error = %e, "probe failed"),
        }
    }
}

/// Records the voters known to hold entries past the bootstrap (and forgets members that
/// left), so a voter that comes back empty is refused ([`crate::fence`]): on a leader, the
/// voters that acknowledged such entries; on a follower, the leader it follows once it holds
/// such entries itself (a leader holds every entry it sends; without this, nobody would
/// remember a wiped leader).
pub async fn record_acks<SM>(raft: Raft<SM>, fence: Arc<Fence>)
where
    SM: openraft::storage::RaftStateMachine<crate::types::TypeConfig>,
{
    loop {
        // A short period: until a voter's first acknowledgement is on disk here, a crash of
        // this node and a wipe of that voter would leave no record of it (docs/guarantees.md).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = raft.metrics().borrow_watched().clone();
        match m.state {
            ServerState::Shutdown => return,
            ServerState::Leader | ServerState::Follower => {}
            _ => continue,
        }
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members: BTreeSet<NodeId> = voters
            .iter()
            .copied()
            .chain(membership.learner_ids())
            .collect();
        let mut set = fence.acked.get();
        set.retain(|n| members.contains(n));
        for (n, matched) in m.replication.iter().flatten() {
            if voters.contains(n) && matched.is_some_and(|l| l.index >= 1) {
                set.insert(*n);
            }
        }
        if m.state == ServerState::Follower
            && m.last_log_index.is_some_and(|i| i >= 1)
            && let Some(leader) = m.current_leader.filter(|l| voters.contains(l))
        {
            set.insert(leader);
        }
        if let Err(e) = fence.acked.store(set).await {
            tracing::warn!(error = %e, "could not record the members that acknowledged entries");
        }
    }
}

/// A pristine replica: asks the other members until [`crate::fence::decide`] decides, then
/// bootstraps the group, takes part, or stays out.
pub async fn probe_peers<SM>(
    cfg: GroupConfig,
    channels: Channels,
    raft: Raft<SM>,
    fence: Arc<Fence>,
) where
    SM: openraft::storage::RaftStateMachine<crate::types::TypeConfig>,
{
    let members: BTreeSet<NodeId> = cfg.members.keys().copied().collect();
    let mut replies = BTreeMap::new();
    for round in 1u64.. {
        ask_peers(&cfg, &channels, &mut replies).await;
        match fence::decide(cfg.group, cfg.node_id, &members, cfg.join, &replies) {
            None => {}
            Some(Decision::Initialize) => {
                // Every initial member may do this with the identical membership; openraft
                // accepts it only on a node whose log is empty, and voting picks one leader.
                let nodes: BTreeMap<NodeId, Node> = cfg
                    .members
                    .iter()
                    .map(|(id, a)| (*id, Node::new(a.clone())))
                    .collect();
                match raft.initialize(nodes).await {
                    Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => tracing::error!(group = %cfg.group, error = %e, "bootstrap failed"),
                }
                fence.set(Gate::Open);
                return;
            }
            Some(Decision::Join) => {
                tracing::info!(group = %cfg.group, "the group runs already: waiting for its leader to copy the log here");
                fence.set(Gate::Open);
                return;
            }
            Some(Decision::Refuse(why)) => {
                tracing::error!(group = %cfg.group, "{why}");
                fence.set(Gate::Refused(why));
                return;
            }
            Some(Decision::AwaitRemoval(why)) if round % 25 == 1 => {
                tracing::warn!(group = %cfg.group, "{why}");
            }
            Some(Decision::AwaitRemoval(_)) => {}
        }
        if round % 25 == 0 {
            tracing::warn!(
                group = %cfg.group,
                answered = ?replies.keys().collect::<Vec<_>>(),
                "started with an empty log: waiting for peers to tell whether the group exists"
            );
        }
        tokio::time::sleep(cfg.heartbeat_interval * 2).await;
    }
}
