//! Append throughput of the segmented log beside the raw sequential write+fdatasync rate of the
//! same disk, measured in the same run (the machines are shared; compare ratios, not absolutes).
//!
//! - `raw/64KiB`: `pwrite` 64 KiB at the end of a file, then `fdatasync`: the floor cost of one
//!   durable 64 KiB append.
//! - `log/64x1KiB`: `LogStore::append` of 64 entries of 1 KiB (framing, CRC32C, segment
//!   bookkeeping) and waiting for the flush callback: one group-commit round per batch.
//! - `log/64x1KiB/pipelined8`: 8 such batches in flight at once, as under concurrent producers;
//!   group commit folds them into fewer fsyncs.
//!
//! Run: `cargo bench -p raft-store --bench append` (files go under target/tmp, the same disk
//! as the build).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use criterion::Throughput;
use criterion::criterion_group;
use criterion::criterion_main;
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

const ENTRY: usize = 1024;
const BATCH: u64 = 64;

fn bench_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("raftmq-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn batch(next: &mut u64) -> Vec<Entry> {
    let from = *next;
    *next += BATCH;
    (from..from + BATCH)
        .map(|i| Entry {
            log_id: log_id(1, i),
            payload: EntryPayload::Normal(Request(vec![(i % 251) as u8; ENTRY])),
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Bytes(BATCH * ENTRY as u64));
    g.measurement_time(Duration::from_secs(8));

    let dir = bench_dir();
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("raw"))
        .unwrap();
    let chunk = vec![7u8; BATCH as usize * ENTRY];
    let mut pos = 0u64;
    g.bench_function("raw/64KiB", |b| {
        b.iter(|| {
            file.write_all_at(&chunk, pos).unwrap();
            file.sync_data().unwrap();
            pos += chunk.len() as u64;
        })
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = bench_dir();
    let (mut store, _) = rt
        .block_on(LogStore::open(
            Arc::new(RealDisk::new()),
            dir.path(),
            LogConfig::default(),
        ))
        .unwrap();
    let mut next = 0u64;
    g.bench_function("log/64x1KiB", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, rx) = TypeConfig::oneshot();
                store
                    .append(batch(&mut next), IOFlushed::signal(tx))
                    .await
                    .unwrap();
                rx.await.unwrap().unwrap();
            })
        })
    });

    g.throughput(Throughput::Bytes(8 * BATCH * ENTRY as u64));
    g.bench_function("log/64x1KiB/pipelined8", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut waits = Vec::new();
                for _ in 0..8 {
                    let (tx, rx) = TypeConfig::oneshot();
                    store
                        .append(batch(&mut next), IOFlushed::signal(tx))
                        .await
                        .unwrap();
                    waits.push(rx);
                }
                for rx in waits {
                    rx.await.unwrap().unwrap();
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
