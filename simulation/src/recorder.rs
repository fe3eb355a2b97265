//! A trivial replicated application for Raft-level tests: it records every applied proposal
//! with its log index, so checkers can compare replicas and look for lost or doubled values.

use raft_store::state_machine::App;
use raft_store::types::LogIndex;

/// The applied proposals, in log order: (log index, payload).
#[derive(Debug, Default, Clone)]
pub struct Recorder(pub Vec<(u64, Vec<u8>)>);

impl App for Recorder {
    fn apply(&mut self, index: LogIndex, request: &[u8]) -> Result<Vec<u8>, String> {
        if let Some((last, _)) = self.0.last() {
            assert!(index.0 > *last, "applied {} after {last}", index.0);
        }
        self.0.push((index.0, request.to_vec()));
        Ok(Vec::new())
    }

    fn snapshot(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(&self.0, bincode::config::standard()).expect("encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = bincode::serde::decode_from_slice(snapshot, bincode::config::standard())
            .map_err(|e| e.to_string())?
            .0;
        Ok(())
    }
}
