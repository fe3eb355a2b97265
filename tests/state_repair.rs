//! Repair of a replica whose state (snapshot, consume queues) is damaged while its log is sound
//! (raft-store's repair), on a real three-process cluster: it rebuilds the state at its restart,
//! from its own log or a peer's snapshot, and serves every retained message again.
#![cfg(not(madsim))]

mod common;
#[path = "support/retained.rs"]
mod retained;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Cluster;
use retained::*;

/// A replica whose state on disk is damaged while its log is sound rebuilds the state at its
/// restart (raft-store's repair) and serves as before: `damage` is done to node 3's group
/// directory while it is down, its log must then say `expect`, and it leads and serves every
/// retained message (with node 1 down, so it counts towards commits too).
fn a_damaged_state_is_repaired(
    base: u16,
    extra: &str,
    damage: impl FnOnce(&std::path::Path),
    sent_while_down: usize,
    expect: &str,
    trimmed: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::configure_with(dir.path(), base, 1, |_| 3, extra);
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_all_led();
    let endpoints = (0..3).map(|i| c.node(i)).collect::<Vec<_>>().join(",");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = rt.spawn(positioned_load(endpoints, acked.clone(), stop.clone()));
    if trimmed {
        wait_until(
            "retention deletes the start of the log",
            Duration::from_secs(120),
            || {
                let (ok, out) = c.admin(0, &["status"]);
                ok && out.contains("older deleted")
            },
        );
    } else {
        wait_until("a few snapshots' worth", Duration::from_secs(120), || {
            acked.lock().unwrap().len() >= 700
        });
    }
    // Each replica snapshots (and purges) every 200 entries.
    std::thread::sleep(Duration::from_secs(3));
    c.kill(2);
    damage(&c.data_dir(2).join("group-1"));
    // The others go on meanwhile: one message per entry from the single producer, so a few
    // hundred take the group past node 3's log, and the others' snapshots (every 200) too.
    let before = acked.lock().unwrap().len();
    wait_until(
        "sends while node 3 is down",
        Duration::from_secs(120),
        || acked.lock().unwrap().len() >= before + sent_while_down,
    );
    c.restart(2);
    wait_until("node 3 repairs its state", Duration::from_secs(60), || {
        c.log(2).contains(expect)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(sender).unwrap();
    read_back_through_node_3(&mut c, &rt, &acked.lock().unwrap(), trimmed);
}

/// A consume-queue file lost after retention purged the log: the state before the purge
/// point exists only in snapshots, so node 3 copies a peer's snapshot and consume queues. It
/// was down for 600 sends, so every peer's snapshot is past the end of its log: the copy
/// first brings its log up to the snapshot with the peer's entries (after checking that the
/// peer's entry at its log's end is the same), then it applies its log after it.
#[test]
fn a_lost_consume_queue_file_is_copied_from_a_peer() {
    a_damaged_state_is_repaired(
        20100,
        "[storage]\nsegment_mb = 0.125\nsnapshot_every = 200\n\n[retention]\nmax_mb_per_group = 1\ncheck_secs = 0.5\n",
        |group| {
            let cq = group.join("cq");
            let mut names: Vec<_> = std::fs::read_dir(&cq)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "cqg") && !is_timer_slot(p))
                .collect();
            names.sort();
            assert!(
                !names.is_empty(),
                "no consume-queue file in {}",
                cq.display()
            );
            std::fs::remove_file(&names[0]).unwrap();
        },
        600,
        "was brought up to a peer's snapshot",
        true,
    );
}

/// A snapshot that fails its CRC while the log was never purged: node 3 sets it aside and
/// applies its whole log again.
#[test]
fn a_corrupt_snapshot_is_rebuilt_from_the_log() {
    a_damaged_state_is_repaired(
        20200,
        "[storage]\nsnapshot_every = 200\n",
        |group| {
            let path = group.join("sm").join("snapshot");
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        },
        0,
        "the replica applies its whole log again",
        false,
    );
}

/// A consume-queue read that fails while the replica runs (here its file was cut short under
/// it): the read fails, the replica stops at its next apply, marks its state for
/// repair and the process exits for its supervisor; restarted, it rebuilds the state (from
/// its log, never purged here) and serves every message again.
#[test]
fn a_consume_queue_read_that_fails_stops_the_replica_and_its_restart_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::configure_with(
        dir.path(),
        20300,
        1,
        |_| 3,
        "[storage]\nsnapshot_every = 200\n",
    );
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_all_led();
    wait_until("node 3 leads", Duration::from_secs(30), || {
        c.leader_of(1) == Some(2)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = rt.spawn(positioned_load(c.node(2), acked.clone(), stop.clone()));
    // Over 192 per queue: the oldest entries are in the file, not in memory (writes of 128
    // entries, 64 kept).
    wait_until("messages in every queue", Duration::from_secs(180), || {
        acked.lock().unwrap().len() >= 3000
    });
    stop.store(true, Ordering::SeqCst);
    rt.block_on(sender).unwrap();
    // Offset 0 of each queue is far behind the entries kept in memory: cut one queue's file.
    let cq = c.data_dir(2).join("group-1").join("cq");
    let file = std::fs::read_dir(&cq)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cqg") && !is_timer_slot(p))
        .min()
        .expect("a consume-queue file");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0)
        .unwrap();
    let queue: i32 = file
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // The read reaches node 3, the leader, through whichever node the client asks first: it
    // fails there (the client then retries elsewhere, and a new leader answers).
    rt.block_on(async {
        let pc = raftmq_client::PullConsumer::builder(client_config(&c.node(2)), "cut-reader")
            .topics(["Trimmed"])
            .start()
            .await
            .unwrap();
        let q = pc
            .queues("Trimmed")
            .await
            .unwrap()
            .into_iter()
            .find(|q| q.id == queue)
            .unwrap();
        let _ = pc.pull(&q, 0, 16, &raftmq_client::Filter::All).await;
        pc.shutdown().await;
    });
    // The next apply stops the replica: one more send.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = rt.spawn(positioned_load(
        (0..3).map(|i| c.node(i)).collect::<Vec<_>>().join(","),
        acked.clone(),
        stop.clone(),
    ));
    let status = c.wait_exit(2, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "node 3 did not exit non-zero: {status:?}\n{}",
        tail(&c.log(2))
    );
    assert!(
        c.log(2).contains("because its state machine failed"),
        "{}",
        tail(&c.log(2))
    );
    c.restart(2);
    wait_until("node 3 repairs its state", Duration::from_secs(60), || {
        c.log(2).contains("the replica applies its whole log again")
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(sender).unwrap();
    read_back_through_node_3(&mut c, &rt, &acked.lock().unwrap(), false);
}

/// A scheduled messages' slot file (`%00timers.<slot>.*.cqg`), not a topic's queue.
fn is_timer_slot(p: &std::path::Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("%00timers."))
}
