//! The broker's replicated application: [`BrokerState`] behind raft-store's [`App`] trait, plus
//! the one side effect a shell needs: waking long polls after each apply.

use std::sync::Arc;

use raft_store::state_machine::App;
use raft_store::types::LogIndex;
use tokio::sync::Notify;

use crate::clock::ClusterClock;
use crate::state::BrokerState;
use crate::state::Outcome;

/// The state machine raft-store drives on every replica.
pub struct BrokerApp {
    state: BrokerState,
    changed: Arc<Notify>,
    clock: Arc<ClusterClock>,
}

impl BrokerApp {
    /// An empty state; `changed` is notified after every apply, and `clock` sees the time of
    /// every applied entry.
    pub fn new(changed: Arc<Notify>, clock: Arc<ClusterClock>) -> Self {
        Self {
            state: BrokerState::default(),
            changed,
            clock,
        }
    }

    /// The state.
    pub fn state(&self) -> &BrokerState {
        &self.state
    }
}

/// Encodes the outcomes of one entry (the proposer decodes them).
pub fn encode_outcomes(o: &[Outcome]) -> Vec<u8> {
    bincode::serde::encode_to_vec(o, bincode::config::standard()).expect("outcomes encode")
}

/// Decodes the outcomes of one entry.
pub fn decode_outcomes(b: &[u8]) -> Result<Vec<Outcome>, String> {
    crate::command::decode_bounded(b)
}

/// Snapshot format: these bytes, then the bincode of [`BrokerState`]. A snapshot without them
/// was written before the format was versioned (before retention) and is read as
/// [`crate::state::LegacyState`].
const SNAPSHOT_MAGIC: &[u8; 6] = b"RMQS\x00\x02";

/// Snapshots hold the whole state, which may legitimately exceed the request limit; they come
/// from this replica's own disk (CRC-checked) or an authenticated peer.
const SNAPSHOT_LIMIT: usize = 1 << 36;

impl App for BrokerApp {
    fn apply(&mut self, index: LogIndex, request: &[u8]) -> Result<Vec<u8>, String> {
        // Only an entry this binary cannot interpret (newer than the binary) is an error: the
        // replica stops rather than diverge. Invalid commands are refused no-ops.
        let outcomes = self.state.apply_entry(index.0, request)?;
        if cfg!(debug_assertions) {
            self.state.check_invariants();
        }
        self.clock.observe(self.state.clock_ms);
        self.changed.notify_waiters();
        Ok(encode_outcomes(&outcomes))
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        bincode::serde::encode_into_std_write(&self.state, &mut out, bincode::config::standard())
            .expect("state encodes");
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let cfg = bincode::config::standard().with_limit::<SNAPSHOT_LIMIT>();
        self.state = match snapshot.strip_prefix(SNAPSHOT_MAGIC.as_slice()) {
            Some(body) => {
                bincode::serde::decode_from_slice(body, cfg)
                    .map_err(|e| e.to_string())?
                    .0
            }
            None => {
                let (legacy, used): (crate::state::LegacyState, usize) =
                    bincode::serde::decode_from_slice(snapshot, cfg).map_err(|e| {
                        format!("neither the current nor the pre-retention format: {e}")
                    })?;
                if used != snapshot.len() {
                    return Err(format!(
                        "pre-retention snapshot with {} trailing bytes",
                        snapshot.len() - used
                    ));
                }
                legacy.into()
            }
        };
        self.clock.observe(self.state.clock_ms);
        self.changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::*;
    use crate::state::consume_queue::CqEntry;
    use crate::state::offsets::ConsumerOffsets;
    use crate::state::pop::PopQueue;

    /// The state's layout before retention, as an older build wrote its snapshots.
    #[derive(Serialize)]
    struct Old {
        clock_ms: u64,
        topics: BTreeMap<String, crate::model::TopicConfig>,
        groups: BTreeMap<String, crate::model::GroupConfig>,
        queues: BTreeMap<(String, u32), OldQueue>,
        pops: BTreeMap<(String, String, u32), PopQueue>,
        offsets: ConsumerOffsets,
        receipt_seq: u64,
        applied_index: u64,
    }

    #[derive(Serialize)]
    struct OldQueue {
        entries: Vec<CqEntry>,
    }

    /// A replica upgraded in place restores the snapshot an older build wrote (queues start
    /// at 0, nothing deleted), and its next snapshot is in the current format.
    #[test]
    fn a_snapshot_from_before_retention_is_read() {
        let e = CqEntry {
            log_index: 7,
            pos: 13,
            len: 5,
            tag_hash: 1,
            store_ms: 1_000,
        };
        let old = Old {
            clock_ms: 1_000,
            topics: BTreeMap::new(),
            groups: BTreeMap::new(),
            queues: BTreeMap::from([(
                ("t".to_string(), 0),
                OldQueue {
                    entries: vec![e, e],
                },
            )]),
            pops: BTreeMap::new(),
            offsets: ConsumerOffsets::default(),
            receipt_seq: 3,
            applied_index: 9,
        };
        let bytes = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
        let mut app = BrokerApp::new(Arc::new(Notify::new()), Arc::new(ClusterClock::new()));
        app.restore(&bytes).unwrap();
        let s = app.state();
        assert_eq!((s.applied_index, s.receipt_seq, s.log_start), (9, 3, 0));
        let q = s.queue("t", 0).unwrap();
        assert_eq!((q.start(), q.end(), q.get(1)), (0, 2, Some(&e)));
        let again = app.snapshot();
        assert!(again.starts_with(SNAPSHOT_MAGIC));
        let mut back = BrokerApp::new(Arc::new(Notify::new()), Arc::new(ClusterClock::new()));
        back.restore(&again).unwrap();
        assert_eq!(back.state(), app.state());
        assert!(back.restore(b"\x05garbage").is_err());
    }
}
