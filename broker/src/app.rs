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
/// was written before the format was versioned (before retention): it is refused with a clear
/// message rather than misread.
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
        let Some(body) = snapshot.strip_prefix(SNAPSHOT_MAGIC.as_slice()) else {
            return Err(
                "the snapshot is in an older RaftMQ format (before retention); \
                        this binary cannot read it. Remove the replica's `sm/snapshot` file: \
                        the log holds every entry, and the state is rebuilt from it"
                    .into(),
            );
        };
        let cfg = bincode::config::standard().with_limit::<SNAPSHOT_LIMIT>();
        self.state = bincode::serde::decode_from_slice(body, cfg)
            .map_err(|e| e.to_string())?
            .0;
        self.clock.observe(self.state.clock_ms);
        self.changed.notify_waiters();
        Ok(())
    }
}
