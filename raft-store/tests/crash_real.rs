//! Crash test on the real filesystem: a child process appends to the log as fast as it can and
//! prints each index once its flush callback fired (the moment openraft would count it as
//! durable); the parent SIGKILLs it mid-append, reopens the log and checks every index the child
//! reported is there with its exact payload. SIGKILL loses the process but not the page cache,
//! so this exercises recovery of a log cut at an arbitrary instant (a partly written batch, a
//! segment created but not yet synced); power loss is covered by the simulated disk.
#![cfg(not(madsim))]

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use raft_store::disk::RealDisk;
use raft_store::log::LogConfig;
use raft_store::log::LogStore;
use raft_store::types::Entry;
use raft_store::types::EntryPayload;
use raft_store::types::Request;
use raft_store::types::TypeConfig;
use raft_store::types::log_id;

const CHILD_ENV: &str = "RAFTMQ_CRASH_CHILD_DIR";

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("entry-{i}-").into_bytes();
    p.resize(100 + (i % 900) as usize, (i % 251) as u8);
    p
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10, // roll often
        index_interval_bytes: 4 << 10,
        max_read_bytes: 1 << 20,
        ..LogConfig::default()
    }
}

/// The child: append forever, report durable indexes on stdout.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let (mut store, _) = LogStore::open(Arc::new(RealDisk::new()), &dir, cfg())
                .await
                .unwrap();
            let mut next = store.state().1.map_or(0, |l| l.index + 1);
            let mut batch = 1u64;
            loop {
                let entries: Vec<Entry> = (next..next + batch)
                    .map(|i| Entry {
                        log_id: log_id(1, i),
                        payload: EntryPayload::Normal(Request(payload(i))),
                    })
                    .collect();
                let last = next + batch - 1;
                let (tx, rx) = TypeConfig::oneshot();
                store.append(entries, IOFlushed::signal(tx)).await.unwrap();
                tokio::spawn(async move {
                    if let Ok(Ok(())) = rx.await {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "durable {last}").unwrap();
                        out.flush().unwrap();
                    }
                });
                next = last + 1;
                batch = batch % 17 + 1;
            }
        });
}

#[test]
fn sigkill_mid_append_keeps_every_flushed_entry() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    let exe = std::env::current_exe().unwrap();
    let mut total_reported = 0;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.strip_prefix("durable ") {
                    let _ = tx.send(i.parse::<u64>().unwrap());
                }
            }
        });
        // Let it get going, then kill it at a different moment each round.
        let start = Instant::now();
        let mut max_durable: Option<u64> = None;
        let run_for = Duration::from_millis(150 + 97 * round);
        while start.elapsed() < run_for || max_durable.is_none() {
            if let Ok(i) = rx.recv_timeout(Duration::from_millis(5)) {
                max_durable = Some(max_durable.map_or(i, |m| m.max(i)));
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "child made no progress"
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        while let Ok(i) = rx.try_recv() {
            max_durable = Some(max_durable.map_or(i, |m| m.max(i)));
        }
        let max_durable = max_durable.unwrap();
        total_reported += 1;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (store, report) = LogStore::open(Arc::new(RealDisk::new()), &dir, cfg()).await.unwrap();
            let last = store.state().1.expect("log not empty").index;
            assert!(
                last >= max_durable,
                "round {round}: the child reported {max_durable} durable but the log ends at {last}"
            );
            let entries = store.read(..).unwrap();
            for (pos, e) in entries.iter().enumerate() {
                assert_eq!(e.log_id.index, pos as u64, "round {round}: dense indexes");
                match &e.payload {
                    EntryPayload::Normal(r) => assert_eq!(r.0, payload(e.log_id.index), "round {round}: payload of {}", e.log_id.index),
                    other => panic!("unexpected payload {other:?}"),
                }
            }
            println!(
                "round {round}: durable {max_durable}, recovered {last} ({} segments, {} torn bytes cut)",
                store.segment_count(),
                report.torn_bytes
            );
        });
    }
    assert_eq!(total_reported, 5);
}
