//! Model-based test of the segmented log: random appends (flushed or not), truncations, purges,
//! crashes and clean reopens on the simulated disk, checked against a plain vector.
//!
//! The rule after a crash: the log equals the model's durable prefix (everything whose flush was
//! acknowledged, plus everything a truncate or purge synced) followed by *some* prefix of the
//! writes that were never acknowledged. Without a crash, the log equals the model exactly.
#![cfg(not(madsim))]

use std::sync::Arc;

use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::type_config::TypeConfigExt;
use proptest::prelude::*;
use raft_store::disk::Disk;
use raft_store::disk::SimDisk;
use raft_store::log::LogConfig;
use raft_store::log::LogStore;
use raft_store::types::Entry;
use raft_store::types::EntryPayload;
use raft_store::types::Request;
use raft_store::types::TypeConfig;
use raft_store::types::log_id;

#[derive(Debug, Clone)]
enum Op {
    Append { count: u8, size: u16, wait: bool },
    BumpTerm,
    Truncate { back: u8 },
    Purge { frac: u8 },
    Crash,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..8, 0u16..900, any::<bool>()).prop_map(|(count, size, wait)| Op::Append { count, size, wait }),
        1 => Just(Op::BumpTerm),
        2 => (0u8..12).prop_map(|back| Op::Truncate { back }),
        1 => any::<u8>().prop_map(|frac| Op::Purge { frac }),
        2 => Just(Op::Crash),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Default)]
struct Model {
    /// (index, term, payload) of every entry in the log.
    entries: Vec<(u64, u64, Vec<u8>)>,
    /// Entries with index <= this are durable.
    durable_upto: Option<u64>,
    purged: Option<(u64, u64)>,
    term: u64,
}

impl Model {
    fn next_index(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.0 + 1)
            .or(self.purged.map(|p| p.0 + 1))
            .unwrap_or(0)
    }
}

fn payload(index: u64, term: u64, size: u16) -> Vec<u8> {
    let mut p = format!("{index}/{term}/").into_bytes();
    p.resize(p.len() + size as usize, (index % 251) as u8);
    p
}

fn as_tuples(entries: &[Entry]) -> Vec<(u64, u64, Vec<u8>)> {
    entries
        .iter()
        .map(|e| {
            let p = match &e.payload {
                EntryPayload::Normal(r) => r.0.clone(),
                other => panic!("unexpected payload {other:?}"),
            };
            (e.log_id.index, e.log_id.leader_id.term, p)
        })
        .collect()
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        max_read_bytes: 1 << 20,
        ..LogConfig::default()
    }
}

async fn open(disk: &SimDisk) -> LogStore {
    let d: Arc<dyn Disk> = Arc::new(disk.clone());
    LogStore::open(d, "/log", cfg())
        .await
        .expect("reopen must succeed")
        .0
}

async fn run(ops: Vec<Op>, seed: u64) {
    let disk = SimDisk::new(seed);
    let mut store = open(&disk).await;
    let mut m = Model {
        term: 1,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Append { count, size, wait } => {
                let first = m.next_index();
                let entries: Vec<Entry> = (first..first + count as u64)
                    .map(|i| Entry {
                        log_id: log_id(m.term, i),
                        payload: EntryPayload::Normal(Request(payload(i, m.term, size))),
                    })
                    .collect();
                for e in &entries {
                    m.entries.push((
                        e.log_id.index,
                        m.term,
                        payload(e.log_id.index, m.term, size),
                    ));
                }
                if wait {
                    let (tx, rx) = TypeConfig::oneshot();
                    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
                    rx.await.unwrap().unwrap();
                    m.durable_upto = m.entries.last().map(|e| e.0);
                } else {
                    store.append(entries, IOFlushed::noop()).await.unwrap();
                }
            }
            Op::BumpTerm => m.term += 1,
            Op::Truncate { back } => {
                let Some(last) = m.entries.last().map(|e| e.0) else {
                    continue;
                };
                let floor = m.purged.map_or(m.entries[0].0.saturating_sub(1), |p| p.0);
                let keep = last.saturating_sub(back as u64).max(floor);
                if keep < m.entries[0].0 {
                    // Truncating everything down to the purge point.
                    let target = m.purged.map(|(i, t)| log_id(t, i));
                    store.truncate_after(target).await.unwrap();
                    m.entries.clear();
                    m.durable_upto = target.map(|l| l.index);
                } else {
                    let term = m.entries.iter().find(|e| e.0 == keep).unwrap().1;
                    store
                        .truncate_after(Some(log_id(term, keep)))
                        .await
                        .unwrap();
                    m.entries.retain(|e| e.0 <= keep);
                    m.durable_upto = Some(keep);
                }
            }
            Op::Purge { frac } => {
                if m.entries.is_empty() {
                    continue;
                }
                let i = (m.entries.len() - 1) * frac as usize / 255;
                let (idx, term, _) = m.entries[i].clone();
                store.purge(log_id(term, idx)).await.unwrap();
                m.entries.retain(|e| e.0 > idx);
                m.purged = Some((idx, term));
            }
            Op::Crash => {
                drop(store);
                disk.crash();
                store = open(&disk).await;
                let actual = as_tuples(&store.read(..).unwrap());
                let durable = m
                    .entries
                    .iter()
                    .filter(|e| m.durable_upto.is_some_and(|d| e.0 <= d))
                    .count();
                assert!(
                    actual.len() >= durable,
                    "crash lost durable entries: {} kept of {durable} durable",
                    actual.len()
                );
                assert_eq!(
                    actual[..],
                    m.entries[..actual.len()],
                    "after a crash the log must be a prefix of the model"
                );
                m.entries = actual;
                m.durable_upto = m.entries.last().map(|e| e.0).or(m.purged.map(|p| p.0));
            }
            Op::Reopen => {
                drop(store);
                store = open(&disk).await;
            }
        }
        let actual = as_tuples(&store.read(..).unwrap());
        assert_eq!(actual, m.entries);
        // Reads of one entry seek from the sparse index (`Scanner::skip_before`).
        for e in &m.entries {
            assert_eq!(
                as_tuples(&store.read(e.0..=e.0).unwrap()),
                std::slice::from_ref(e)
            );
        }
        let (purged, last) = store.state();
        assert_eq!(purged.map(|p| (p.index, p.leader_id.term)), m.purged);
        let model_last = m.entries.last().map(|e| (e.0, e.1)).or(m.purged);
        assert_eq!(last.map(|l| (l.index, l.leader_id.term)), model_last);
    }
}

/// Reads of one entry and of short ranges, in segments whose sparse-index points are far
/// apart and whose frames are larger than a seeking read's chunk, return exactly the entries
/// asked for (the skip reads headers only, and jumps over frames its buffer does not hold).
#[test]
fn seeking_reads_find_every_entry_among_large_frames() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let disk = SimDisk::new(7);
            let d: Arc<dyn Disk> = Arc::new(disk.clone());
            let cfg = LogConfig {
                segment_bytes: 4 << 20,
                index_interval_bytes: 256 << 10,
                max_read_bytes: 8 << 20,
                ..LogConfig::default()
            };
            let mut store = LogStore::open(d, "/log", cfg).await.unwrap().0;
            let sizes = [40_000u16, 100, 20_000, 7, 65_000, 300, 16_384, 16_300];
            let entries: Vec<Entry> = (0..120u64)
                .map(|i| Entry {
                    log_id: log_id(1, i),
                    payload: EntryPayload::Normal(Request(payload(i, 1, sizes[i as usize % 8]))),
                })
                .collect();
            let want = as_tuples(&entries);
            let (tx, rx) = TypeConfig::oneshot();
            store.append(entries, IOFlushed::signal(tx)).await.unwrap();
            rx.await.unwrap().unwrap();
            for (i, e) in want.iter().enumerate() {
                assert_eq!(
                    as_tuples(&store.read(e.0..=e.0).unwrap()),
                    std::slice::from_ref(e)
                );
                let to = (i + 3).min(want.len());
                assert_eq!(as_tuples(&store.read(e.0..to as u64).unwrap()), want[i..to]);
            }
        });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..80), seed in any::<u64>()) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops, seed));
    }
}
