//! Repair of a replica whose state is damaged while its log is sound (raft-store's `repair`),
//! on the simulated disk: a log never purged rebuilds the state from itself and sets the
//! damaged snapshot aside; a purged one needs a peer, and without one the repair fails
//! leaving its marker, so the next start repairs again instead of opening the state. (The
//! copy from a peer runs in the broker's `tests/replica_replacement.rs`, on real processes.)
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use raft_store::Error;
use raft_store::disk::Disk;
use raft_store::disk::SimDisk;
use raft_store::group::GroupConfig;
use raft_store::log::LogStore;
use raft_store::network::Channels;
use raft_store::repair;
use raft_store::repair::Repaired;
use raft_store::types::Entry;
use raft_store::types::EntryPayload;
use raft_store::types::GroupId;
use raft_store::types::Request;
use raft_store::types::log_id;

fn entry(i: u64) -> Entry {
    Entry {
        log_id: log_id(1, i),
        payload: EntryPayload::Normal(Request(vec![i as u8; 100])),
    }
}

/// Node 1 of group 1 in `/g`, with an application directory `app` and a peer, node 2, that
/// nothing listens for.
fn config() -> GroupConfig {
    let members = BTreeMap::from([(1, "127.0.0.1:1".to_string()), (2, "127.0.0.1:1".into())]);
    let mut cfg = GroupConfig::new(GroupId(1), 1, members, "/g");
    cfg.seed_dirs = vec!["app".into()];
    // Rounds of asking the peers are this times 10 apart.
    cfg.heartbeat_interval = Duration::from_millis(1);
    cfg
}

/// Writes a log of `entries` purged through `purged`, a snapshot, an application file and the
/// marker of a repair a crash interrupted.
async fn damaged_replica(disk: &Arc<dyn Disk>, entries: &[u64], purged: Option<u64>) {
    let (log, _) = LogStore::open(disk.clone(), "/g/log", Default::default())
        .await
        .unwrap();
    log.import(entries.iter().copied().map(entry).collect())
        .await
        .unwrap();
    log.finish_import(purged.map(|p| log_id(1, p)))
        .await
        .unwrap();
    drop(log);
    for (dir, name) in [
        ("/g/sm", "snapshot"),
        ("/g/app", "queue.0"),
        ("/g", "repairing"),
    ] {
        disk.create_dir_all(Path::new(dir)).unwrap();
        let f = disk.create(&Path::new(dir).join(name)).unwrap();
        f.write_at(b"not what it should be", 0).unwrap();
        f.sync().await.unwrap();
    }
}

fn names(disk: &Arc<dyn Disk>, dir: &str) -> Vec<String> {
    let mut n = disk.list(Path::new(dir)).unwrap();
    n.sort();
    n
}

#[tokio::test]
async fn a_log_never_purged_rebuilds_the_state_from_itself() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(7));
    damaged_replica(&disk, &(1..=20).collect::<Vec<_>>(), None).await;
    let cfg = config();
    assert!(repair::interrupted(&cfg, &*disk).unwrap());
    let channels = Channels::new(raftmq_proto::auth::ClusterKey::insecure_for_tests());
    let done = repair::repair(&cfg, disk.clone(), &channels, "a test")
        .await
        .unwrap();
    assert_eq!(done, Repaired::FromLog);
    // The marker goes once the replica has opened the rebuilt state (Group::start).
    assert!(repair::interrupted(&cfg, &*disk).unwrap());
    repair::settle(&cfg, &*disk).await.unwrap();
    assert!(!repair::interrupted(&cfg, &*disk).unwrap());
    assert_eq!(names(&disk, "/g/sm"), [repair::DAMAGED_SNAPSHOT]);
    assert!(names(&disk, "/g/app").is_empty());
    // The log is untouched: the replica applies all of it again.
    let (log, report) = LogStore::open(disk.clone(), "/g/log", Default::default())
        .await
        .unwrap();
    assert_eq!(report.last_log_id, Some(log_id(1, 20)));
    assert_eq!(log.read(1..=20).unwrap().len(), 20);
}

#[tokio::test]
async fn a_purged_log_without_a_peer_to_copy_from_keeps_the_marker() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(8));
    damaged_replica(&disk, &(101..=160).collect::<Vec<_>>(), Some(100)).await;
    let cfg = config();
    let channels = Channels::new(raftmq_proto::auth::ClusterKey::insecure_for_tests());
    let err = repair::repair(&cfg, disk.clone(), &channels, "a test")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("purged through 100")
            && reason.contains("node 2")),
        "{err}"
    );
    // Nothing was cleared, and the next start repairs again before opening the state.
    assert!(repair::interrupted(&cfg, &*disk).unwrap());
    assert_eq!(names(&disk, "/g/sm"), ["snapshot"]);
    assert_eq!(names(&disk, "/g/app"), ["queue.0"]);
    assert!(repair::damaged_state(&cfg, &err).is_some());
}
