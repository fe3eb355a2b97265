//! The harness of the broker's state-machine model tests (`state_model.rs`, `timer_model.rs`,
//! `fifo_model.rs`):
//! applies commands through the real entry encoding, checks the state's invariants after
//! every entry, and can run a twin replica that keeps its consume queues in files on a
//! simulated disk (checkpoints and power losses included), which must answer the same.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use broker::app::BrokerApp;
use broker::app::encode_outcomes;
use broker::clock::ClusterClock;
use broker::state::cq_files::CqFiles;
use broker::state::cq_files::Layout;
use raft_store::disk::Disk;
use raft_store::disk::SimDisk;
use raft_store::state_machine::App;
use raft_store::types::LogIndex;

use broker::command::Command;
use broker::command::Pop;
use broker::command::PopOrder;
use broker::command::TagFilter;
use broker::command::encode_entry;
use broker::model::MessageKind;
use broker::model::QueueId;
use broker::model::StoredMessage;
use broker::state::BrokerState;
use broker::state::Outcome;

/// The state under test, the next log index and time, and optionally a file-backed twin.
pub struct Harness {
    pub state: BrokerState,
    pub index: u64,
    pub now: u64,
    pub twin: Option<Twin>,
}

/// A replica of the same state keeping its consume queues in files on a simulated disk.
pub struct Twin {
    disk: Arc<SimDisk>,
    app: BrokerApp,
    /// The last checkpoint's snapshot, as if persisted.
    snapshot: Option<Vec<u8>>,
    /// Entries applied since (index, bytes, encoded outcomes).
    since: Vec<(u64, Vec<u8>, Vec<u8>)>,
    applies: u64,
    /// Timer slot width and load batch, if not the defaults.
    timer_slot: Option<(u64, u64)>,
}

const CQ_DIR: &str = "/g/cq";

fn twin_app(disk: &Arc<SimDisk>, timer_slot: Option<(u64, u64)>) -> BrokerApp {
    let d: Arc<dyn Disk> = disk.clone();
    let files = CqFiles::open_with(d, CQ_DIR, Layout::tiny()).unwrap();
    let app = BrokerApp::new(
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(ClusterClock::new()),
    );
    match timer_slot {
        Some((ms, batch)) => app.with_timer_slot(ms, batch),
        None => app,
    }
    .with_files(files)
}

impl Twin {
    pub fn new(seed: u64) -> Self {
        Self::with_timer_slot(seed, None)
    }

    /// A twin whose timer slots are `slot_ms` wide, loaded `load_batch` records an entry
    /// (see `BrokerApp::with_timer_slot`).
    pub fn with_timer_slot(seed: u64, slot_ms: Option<(u64, u64)>) -> Self {
        let disk = Arc::new(SimDisk::new(seed));
        Self {
            app: twin_app(&disk, slot_ms),
            disk,
            snapshot: None,
            since: Vec::new(),
            applies: 0,
            timer_slot: slot_ms,
        }
    }

    fn apply(&mut self, index: u64, bytes: &[u8], expect: &[u8]) {
        let got = self.app.apply(LogIndex(index), bytes).unwrap();
        assert_eq!(
            got, expect,
            "file-backed replica answered differently at {index}"
        );
        self.since.push((index, bytes.to_vec(), got));
        self.applies += 1;
        if self.applies.is_multiple_of(5) {
            self.checkpoint();
        }
        if self.applies.is_multiple_of(11) {
            self.crash_and_recover();
        }
    }

    fn checkpoint(&mut self) {
        let cp = self.app.checkpoint().unwrap();
        futures::executor::block_on(async {
            for p in &cp.sync {
                self.disk.open(p).unwrap().sync().await.unwrap();
            }
            for d in &cp.sync_dirs {
                self.disk.sync_dir(d).await.unwrap();
            }
        });
        self.snapshot = Some(cp.data);
        self.since.clear();
        for p in &cp.obsolete {
            self.disk.remove(p).unwrap();
        }
    }

    /// Power loss: unsynced writes are lost or torn; restore the last snapshot and apply the
    /// entries after it again, which must answer exactly as before.
    fn crash_and_recover(&mut self) {
        self.disk.crash();
        self.app = twin_app(&self.disk, self.timer_slot);
        if let Some(s) = &self.snapshot {
            self.app.restore(s).unwrap();
        }
        for (index, bytes, expect) in &self.since {
            let got = self.app.apply(LogIndex(*index), bytes).unwrap();
            assert_eq!(
                &got, expect,
                "replay after a power loss answered differently at {index}"
            );
        }
        let names = self.disk.list(Path::new(CQ_DIR)).unwrap();
        // Nothing but the chunks of live queues is left behind, none beyond a queue's end
        // (chunks wholly below a queue's start go at a later checkpoint).
        let chunk = Layout::tiny().chunk;
        let state = self.app.state();
        let ends = state.queues.values().map(|q| q.end());
        let live: u64 = (ends.chain(state.timers.slot_queue_ends()))
            .map(|end| end / chunk + 1)
            .sum();
        assert!(
            names.len() as u64 <= live,
            "stray consume-queue files: {names:?}"
        );
    }

    fn same_as(&self, state: &BrokerState) {
        let t = self.app.state();
        assert_eq!(t, state, "file-backed state differs");
        for (k, cq) in &state.queues {
            let tq = &t.queues[k];
            for o in cq.start()..cq.end() {
                assert_eq!(tq.get(o), cq.get(o), "queue {k:?} offset {o}");
            }
            assert_eq!(tq.get(cq.end()), None);
            if cq.start() > 0 {
                assert_eq!(tq.get(cq.start() - 1), None);
            }
        }
        t.check_invariants();
    }
}

impl Harness {
    pub fn new(now: u64) -> Self {
        Self {
            state: BrokerState::default(),
            index: 0,
            now,
            twin: None,
        }
    }

    pub fn apply(&mut self, cmds: &[Command]) -> Vec<Outcome> {
        self.index += 1;
        let bytes = encode_entry(self.now, cmds);
        let out = self.state.apply_entry(self.index, &bytes).unwrap();
        self.state.check_invariants();
        if let Some(t) = &mut self.twin {
            t.apply(self.index, &bytes, &encode_outcomes(&out));
            t.same_as(&self.state);
        }
        out
    }

    pub fn apply1(&mut self, cmd: Command) -> Outcome {
        self.apply(&[cmd]).pop().unwrap()
    }
}

/// A plain message `m<n>` to queue `queue` of topic `t`.
pub fn msg(queue: u32, n: u64) -> StoredMessage {
    StoredMessage {
        topic: "t".into(),
        queue: QueueId(queue),
        message_id: format!("m{n}"),
        tag: None,
        keys: vec![],
        properties: BTreeMap::new(),
        kind: MessageKind::Normal,
        message_group: None,
        delivery_ms: None,
        born_ms: 0,
        born_host: String::new(),
        body_encoding: 1,
        trace_context: None,
        body: n.to_le_bytes().to_vec(),
    }
}

/// A receive of up to `max` from any queue of topic `t` for group `g`, invisible for
/// `invisible_ms`, oldest first, no filter.
#[allow(dead_code)] // Not every test that includes the harness receives this way.
pub fn pop_any(max: u32, invisible_ms: u64) -> Pop {
    Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: None,
        max,
        invisible_ms,
        filter: TagFilter::All,
        max_bytes: u64::MAX,
        order: PopOrder::OldestFirst,
        sql: None,
        verdicts: None,
    }
}
