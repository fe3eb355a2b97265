//! openraft's storage conformance suite against the segmented log and the state-machine
//! adapter, on the simulated disk and on the real filesystem. Segments are tiny so the suite
//! also exercises rolling, multi-segment reads, truncation across segments and purging.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use openraft::StorageError;
use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use raft_store::disk::Disk;
use raft_store::disk::SimDisk;
use raft_store::log::LogConfig;
use raft_store::log::LogStore;
use raft_store::state_machine::App;
use raft_store::state_machine::StateMachineStore;
use raft_store::types::LogIndex;
use raft_store::types::TypeConfig;

/// A trivial application: remembers what it applied.
#[derive(Default)]
struct Recorder(Vec<(u64, Vec<u8>)>);

impl App for Recorder {
    fn apply(&mut self, index: LogIndex, request: &[u8]) -> Result<Vec<u8>, String> {
        self.0.push((index.0, request.to_vec()));
        Ok(request.to_vec())
    }
    fn snapshot(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(&self.0, bincode::config::standard()).unwrap()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0 = bincode::serde::decode_from_slice(snapshot, bincode::config::standard())
            .map_err(|e| e.to_string())?
            .0;
        Ok(())
    }
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        max_read_bytes: 1 << 20,
        ..LogConfig::default()
    }
}

struct SimBuilder {
    seed: AtomicU64,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<Recorder>, ()> for SimBuilder {
    async fn build(
        &self,
    ) -> Result<((), LogStore, StateMachineStore<Recorder>), StorageError<TypeConfig>> {
        let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(self.seed.fetch_add(1, Ordering::Relaxed)));
        let (log, _) = LogStore::open(disk.clone(), "/data/log", small_segments())
            .await
            .expect("open store");
        let sm = StateMachineStore::open(disk, "/data/sm", Recorder::default())
            .await
            .expect("open store");
        Ok(((), log, sm))
    }
}

#[tokio::test]
async fn conformance_on_sim_disk() {
    Suite::test_all(SimBuilder {
        seed: AtomicU64::new(1),
    })
    .await
    .unwrap();
}

#[cfg(not(madsim))]
mod real {
    use raft_store::disk::RealDisk;

    use super::*;

    struct RealBuilder {
        root: tempfile::TempDir,
        n: AtomicU64,
    }

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<Recorder>, ()> for RealBuilder {
        async fn build(
            &self,
        ) -> Result<((), LogStore, StateMachineStore<Recorder>), StorageError<TypeConfig>> {
            let dir = self
                .root
                .path()
                .join(self.n.fetch_add(1, Ordering::Relaxed).to_string());
            let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
            let (log, _) = LogStore::open(disk.clone(), dir.join("log"), small_segments())
                .await
                .expect("open store");
            let sm = StateMachineStore::open(disk, dir.join("sm"), Recorder::default())
                .await
                .expect("open store");
            Ok(((), log, sm))
        }
    }

    #[tokio::test]
    async fn conformance_on_real_disk() {
        Suite::test_all(RealBuilder {
            root: tempfile::tempdir().unwrap(),
            n: AtomicU64::new(0),
        })
        .await
        .unwrap();
    }
}
