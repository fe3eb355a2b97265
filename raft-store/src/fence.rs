//! Fencing a replica that lost its data.
//!
//! A voter whose data directory was emptied (a replaced disk, a wiped directory) has forgotten
//! its vote and the entries it acknowledged. If it ran as a voter again, it could elect a
//! leader that lacks committed entries. Raft's only safe way back is a membership change:
//! remove it, then add it back as a learner that copies the log first (docs/operations.md).
//!
//! So a replica that starts with an empty log (pristine) does not take part in Raft until it
//! has asked its peers ([`ProbeReply`]):
//!
//! - a peer that still counts it as a voter and knows it held entries ([`Acked`]: a leader saw
//!   it acknowledge them, or a follower followed it as leader) means it lost its data: it
//!   refuses, saying how to rejoin, and stays out ([`Decision::Refuse`]);
//! - a peer whose log has entries past the bootstrap means the group runs already: the replica
//!   waits for the leader to copy the log to it ([`Decision::Join`]; a node started late in a
//!   new cluster, or a replacement started with `join`);
//! - a majority of empty replicas (itself included) means the group is new: it bootstraps it
//!   ([`Decision::Initialize`]; nothing can have been committed without a majority).
//!
//! Until it decides, every Raft request to it is refused; probes are always answered. The
//! record is each replica's own (kept on disk, [`Acked`]): the fence holds as long as one peer
//! that led the group while the lost replica was acknowledging entries (or followed it while it
//! led) answers its probe.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use serde::Deserialize;
use serde::Serialize;

use crate::disk::Disk;
use crate::error::Error;
use crate::error::Result;
use crate::types::GroupId;
use crate::types::NodeId;

/// What a replica answers a pristine peer's probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// Its last log index (`None`: an empty log; 0: only the bootstrap membership).
    pub last_log_index: Option<u64>,
    /// Whether its membership counts the asking node as a voter.
    pub voter: bool,
    /// The log index of that membership (peers that lag may not have seen a removal yet: the
    /// newest membership among the answers decides).
    pub membership_index: Option<u64>,
    /// Whether it knows the asking node held entries (see [`Acked`]).
    pub acked: bool,
}

/// What a pristine replica does, from its peers' answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bootstrap the group with the configured members.
    Initialize,
    /// Take part without bootstrapping: a leader copies the log.
    Join,
    /// Stay out: the replica lost data it had acknowledged (the reason, with what to do).
    Refuse(String),
    /// Started to rejoin (`join`) but still a voter: wait for the removal (why, to log).
    AwaitRemoval(String),
}

/// Decides from the `replies` of the other members so far; `None`: ask again.
pub fn decide(
    group: GroupId,
    self_id: NodeId,
    members: &BTreeSet<NodeId>,
    join: bool,
    replies: &BTreeMap<NodeId, ProbeReply>,
) -> Option<Decision> {
    // Whether it is a voter is for the newest membership answered to say; whether it held
    // entries, for any peer that knows.
    let newest = replies.values().map(|r| r.membership_index).max();
    let voter = replies
        .values()
        .any(|r| r.voter && Some(r.membership_index) == newest);
    let acked = replies.iter().find(|(_, r)| r.acked).map(|(p, _)| *p);
    // An answer that knows of no membership (an empty peer, or a probe answered by this very
    // replica) tells nothing about who is a voter: a record of it held entries waits for one
    // that does.
    let informed = replies.values().any(|r| r.membership_index.is_some());
    if acked.is_some() && !informed {
        return None;
    }
    if let (true, Some(peer), true) = (voter, acked, join) {
        return Some(Decision::AwaitRemoval(format!(
            "group {group}: node {self_id} started to rejoin, but the group still counts it as \
             a voter (node {peer} saw it hold entries): it waits, taking no part, until \
             `raftmq admin replica remove --group {group} --node {self_id}` has run"
        )));
    }
    if let (true, Some(peer)) = (voter, acked) {
        return Some(Decision::Refuse(format!(
            "group {group}: node {self_id} starts with an empty log, but node {peer} saw it \
             acknowledge entries and still counts it as a voter: its data was lost, and running \
             it as a voter could lose committed messages. Rejoin instead: on a live node run \
             `raftmq admin replica remove --group {group} --node {self_id}`, start this node with \
             `--rejoin`, then run `raftmq admin replica add --group {group} --node {self_id}` \
             (docs/operations.md, \"Replacing a failed disk\")"
        )));
    }
    if join {
        return informed.then_some(Decision::Join);
    }
    if members.iter().all(|m| *m == self_id) {
        return Some(Decision::Initialize);
    }
    if replies
        .values()
        .any(|r| r.last_log_index.is_some_and(|i| i >= 1))
    {
        return Some(Decision::Join);
    }
    let empty = 1 + replies
        .iter()
        .filter(|(n, r)| members.contains(n) && r.last_log_index.is_none_or(|i| i == 0))
        .count();
    (empty * 2 > members.len()).then_some(Decision::Initialize)
}

/// The members this replica knows held entries (as leader, it saw them acknowledge entries;
/// as follower, it followed them as leader), kept in `acked-members` in the group's directory (written whole: temporary file, fsync, rename, directory fsync).
pub struct Acked {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    set: Mutex<BTreeSet<NodeId>>,
    /// Serialises writers, so an older set never replaces a newer one on disk.
    writing: tokio::sync::Mutex<()>,
}

const ACKED: &str = "acked-members";

impl Acked {
    /// Loads the set from `dir` (empty if there is none).
    pub fn load(disk: Arc<dyn Disk>, dir: &Path) -> Result<Self> {
        disk.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(ACKED);
        let mut set = BTreeSet::new();
        if disk
            .list(dir)
            .map_err(|e| Error::io(dir, e))?
            .iter()
            .any(|n| n == ACKED)
        {
            let f = disk.open(&path).map_err(|e| Error::io(&path, e))?;
            let len = f.len().map_err(|e| Error::io(&path, e))? as usize;
            let mut buf = vec![0u8; len.min(1 << 16)];
            crate::disk::read_exact_at(&*f, &mut buf, 0).map_err(|e| Error::io(&path, e))?;
            // An unreadable record (never completed: it is renamed into place only once
            // synced) is treated as empty, which only weakens the fence, never a start.
            for id in String::from_utf8_lossy(&buf).split(',') {
                if let Ok(id) = id.trim().parse() {
                    set.insert(id);
                }
            }
        }
        Ok(Self {
            disk,
            dir: dir.to_path_buf(),
            set: Mutex::new(set),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether `node` is in the set.
    pub fn contains(&self, node: NodeId) -> bool {
        self.set.lock().unwrap().contains(&node)
    }

    /// The set.
    pub fn get(&self) -> BTreeSet<NodeId> {
        self.set.lock().unwrap().clone()
    }

    /// Replaces the set with `set`, durably, if it differs.
    pub async fn store(&self, set: BTreeSet<NodeId>) -> Result<()> {
        let _w = self.writing.lock().await;
        if *self.set.lock().unwrap() == set {
            return Ok(());
        }
        let text: Vec<String> = set.iter().map(u64::to_string).collect();
        let names = (&*format!("{ACKED}.tmp"), ACKED);
        crate::disk::replace_file(&*self.disk, &self.dir, names, text.join(",").as_bytes()).await?;
        *self.set.lock().unwrap() = set;
        Ok(())
    }
}

/// Whether a replica takes part in Raft yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Pristine, asking its peers.
    Probing,
    /// Taking part.
    Open,
    /// Out for good (why, and what to do).
    Refused(String),
}

/// A replica's gate and its record of acknowledging members.
pub struct Fence {
    gate: Mutex<Gate>,
    /// See [`Acked`].
    pub acked: Acked,
    /// The replica had a log when it started (its gate starts open).
    pub had_log: bool,
}

impl Fence {
    /// The fence of a replica that started with a log (`had_log`: open) or without one
    /// (probing).
    pub fn new(had_log: bool, acked: Acked) -> Self {
        Self {
            gate: Mutex::new(if had_log { Gate::Open } else { Gate::Probing }),
            acked,
            had_log,
        }
    }

    /// The gate.
    pub fn gate(&self) -> Gate {
        self.gate.lock().unwrap().clone()
    }

    /// Sets the gate.
    pub fn set(&self, gate: Gate) {
        *self.gate.lock().unwrap() = gate;
    }

    /// `Ok` if Raft requests may reach the replica; otherwise why not (sent to the peer).
    pub fn admit(&self, group: GroupId, node: NodeId) -> std::result::Result<(), String> {
        match &*self.gate.lock().unwrap() {
            Gate::Open => Ok(()),
            Gate::Probing => Err(format!(
                "the replica of group {group} on node {node} started empty and is asking its \
                 peers whether it may take part"
            )),
            Gate::Refused(why) => Err(format!("fenced: {why}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(last: Option<u64>, voter: bool, acked: bool) -> ProbeReply {
        ProbeReply {
            last_log_index: last,
            voter,
            membership_index: Some(1),
            acked,
        }
    }

    #[test]
    fn decisions() {
        let g = GroupId(1);
        let three = BTreeSet::from([1, 2, 3]);
        let none = BTreeMap::new();
        // Alone: wait, unless the group has only this member.
        assert_eq!(decide(g, 1, &three, false, &none), None);
        assert_eq!(
            decide(g, 1, &BTreeSet::from([1]), false, &none),
            Some(Decision::Initialize)
        );
        // A new cluster: a majority is empty (the bootstrap entry alone counts as empty).
        let fresh = BTreeMap::from([(2, reply(Some(0), true, false))]);
        assert_eq!(
            decide(g, 1, &three, false, &fresh),
            Some(Decision::Initialize)
        );
        // Started late in a running group that never saw it acknowledge anything.
        let late = BTreeMap::from([(2, reply(Some(40), true, false))]);
        assert_eq!(decide(g, 1, &three, false, &late), Some(Decision::Join));
        // Lost its data: refused; with `join`, it waits for its removal.
        let mut lost = BTreeMap::from([
            (2, reply(Some(40), true, false)),
            (3, reply(Some(40), true, true)),
        ]);
        match decide(g, 1, &three, false, &lost) {
            Some(Decision::Refuse(why)) => assert!(why.contains("--rejoin"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(g, 1, &three, true, &lost),
            Some(Decision::AwaitRemoval(_))
        ));
        // Removed (node 2 has the newer membership; node 3 lags): it may rejoin.
        lost.insert(
            2,
            ProbeReply {
                membership_index: Some(50),
                ..reply(Some(50), false, false)
            },
        );
        assert_eq!(decide(g, 1, &three, true, &lost), Some(Decision::Join));
        assert_eq!(decide(g, 1, &three, true, &none), None);
        // Answers that know no membership (empty peers; its own, under a reused address) let
        // neither a rejoin nor a record decide anything.
        let blank = ProbeReply {
            membership_index: None,
            ..reply(None, false, false)
        };
        let blanks = BTreeMap::from([(2, blank.clone())]);
        assert_eq!(decide(g, 1, &three, true, &blanks), None);
        let recorded = BTreeMap::from([(
            2,
            ProbeReply {
                acked: true,
                ..blank
            },
        )]);
        assert_eq!(decide(g, 1, &three, false, &recorded), None);
    }
}
