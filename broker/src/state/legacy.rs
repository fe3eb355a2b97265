//! Snapshot layouts of older builds, read so that a replica upgraded in place restarts as it
//! was: [`LegacyState`] (before retention: no queue starts, no log start) and [`StateV2`]
//! (between retention and consume queues on disk: every queue's entries in the snapshot) and
//! [`StateV3`] (before scheduled messages: no timers) and [`StateV4`] (before FIFO receives
//! told message groups apart: no skipped offsets, no group hashes) and [`StateV5`] (before
//! transactions).
//! Each converts to the next; the last to [`BrokerState`], with its queues in memory until
//! [`BrokerState::use_files`] writes them out.
//!
//! Versions 3 and 4 hold consume queues in the current image, whose entries (with a group
//! hash) appear only for queues kept in memory: every broker replica has kept them in files
//! since version 3, so its snapshots hold none.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::VecDeque;

use serde::Deserialize;
use serde::Serialize;

use super::BrokerState;
use super::QueueFiles;
use super::consume_queue::ConsumeQueue;
use super::consume_queue::CqEntry;
use super::offsets::ConsumerOffsets;
use super::pop::Inflight;
use super::pop::PopQueue;
use super::timer::Pending;
use super::timer::Timers;
use crate::command::TimerKey;
use crate::model::GroupConfig;
use crate::model::TopicConfig;

/// A consume-queue entry before message group hashes (versions 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CqEntryV1 {
    /// Log entry holding the message.
    pub log_index: u64,
    /// Byte offset of the message within the entry.
    pub pos: u32,
    /// Encoded message length.
    pub len: u32,
    /// Hash of the tag.
    pub tag_hash: u64,
    /// Store time.
    pub store_ms: u64,
}

impl From<CqEntryV1> for CqEntry {
    fn from(e: CqEntryV1) -> Self {
        CqEntry {
            log_index: e.log_index,
            pos: e.pos,
            len: e.len,
            tag_hash: e.tag_hash,
            store_ms: e.store_ms,
            group_hash: 0, // not known: ordered with every message of its queue
        }
    }
}

/// A group's receive state on a queue before FIFO receives went past blocked message groups
/// (versions 1 to 4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopQueueV4 {
    /// Every offset below was handed out or filtered out.
    pub next: u64,
    /// Delivered and not acknowledged.
    pub inflight: BTreeMap<u64, Inflight>,
}

impl From<PopQueueV4> for PopQueue {
    fn from(p: PopQueueV4) -> Self {
        PopQueue {
            next: p.next,
            inflight: p.inflight,
            skipped: BTreeSet::new(),
        }
    }
}

type PopsV4 = BTreeMap<(String, String, u32), PopQueueV4>;

fn pops(p: PopsV4) -> BTreeMap<(String, String, u32), PopQueue> {
    p.into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// The state before retention.
#[derive(Deserialize)]
pub struct LegacyState {
    clock_ms: u64,
    topics: BTreeMap<String, TopicConfig>,
    groups: BTreeMap<String, GroupConfig>,
    queues: BTreeMap<(String, u32), LegacyQueue>,
    pops: PopsV4,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
}

#[derive(Deserialize)]
struct LegacyQueue {
    entries: VecDeque<CqEntryV1>,
}

impl From<LegacyState> for StateV2 {
    fn from(l: LegacyState) -> Self {
        StateV2 {
            clock_ms: l.clock_ms,
            topics: l.topics,
            groups: l.groups,
            queues: l
                .queues
                .into_iter()
                .map(|(k, q)| {
                    let q = QueueV2 {
                        start: 0,
                        entries: q.entries,
                    };
                    (k, q)
                })
                .collect(),
            pops: l.pops,
            offsets: l.offsets,
            receipt_seq: l.receipt_seq,
            applied_index: l.applied_index,
            log_start: 0,
        }
    }
}

impl From<LegacyState> for BrokerState {
    fn from(l: LegacyState) -> Self {
        StateV2::from(l).into()
    }
}

/// The state between retention and consume queues on disk.
#[derive(Deserialize)]
pub struct StateV2 {
    clock_ms: u64,
    topics: BTreeMap<String, TopicConfig>,
    groups: BTreeMap<String, GroupConfig>,
    queues: BTreeMap<(String, u32), QueueV2>,
    pops: PopsV4,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
    log_start: u64,
}

#[derive(Deserialize)]
struct QueueV2 {
    start: u64,
    entries: VecDeque<CqEntryV1>,
}

impl From<StateV2> for BrokerState {
    fn from(l: StateV2) -> Self {
        BrokerState {
            clock_ms: l.clock_ms,
            topics: l.topics,
            groups: l.groups,
            queues: l
                .queues
                .into_iter()
                .map(|(k, q)| {
                    let entries = q.entries.into_iter().map(CqEntry::from).collect();
                    (k, ConsumeQueue::from_entries(q.start, entries))
                })
                .collect(),
            pops: pops(l.pops),
            offsets: l.offsets,
            receipt_seq: l.receipt_seq,
            applied_index: l.applied_index,
            log_start: l.log_start,
            topic_max_age_ms: BTreeMap::new(),
            timers: Default::default(),
            groups_from: 0,
            grouped_from: BTreeMap::new(),
            txns: Default::default(),
            dedup: Default::default(),
            files: QueueFiles::default(),
        }
    }
}

/// The state before scheduled messages (snapshot version 3): the current layout without
/// timers.
#[derive(Deserialize)]
pub struct StateV3 {
    clock_ms: u64,
    topics: BTreeMap<String, TopicConfig>,
    groups: BTreeMap<String, GroupConfig>,
    queues: BTreeMap<(String, u32), ConsumeQueue>,
    pops: PopsV4,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
    log_start: u64,
    topic_max_age_ms: BTreeMap<String, u64>,
}

impl From<StateV3> for BrokerState {
    fn from(l: StateV3) -> Self {
        StateV4 {
            clock_ms: l.clock_ms,
            topics: l.topics,
            groups: l.groups,
            queues: l.queues,
            pops: l.pops,
            offsets: l.offsets,
            receipt_seq: l.receipt_seq,
            applied_index: l.applied_index,
            log_start: l.log_start,
            topic_max_age_ms: l.topic_max_age_ms,
            timers: Default::default(),
        }
        .into()
    }
}

/// The state before FIFO receives told message groups apart (snapshot version 4): receive
/// state without skipped offsets.
#[derive(Deserialize)]
pub struct StateV4 {
    clock_ms: u64,
    topics: BTreeMap<String, TopicConfig>,
    groups: BTreeMap<String, GroupConfig>,
    queues: BTreeMap<(String, u32), ConsumeQueue>,
    pops: PopsV4,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
    log_start: u64,
    topic_max_age_ms: BTreeMap<String, u64>,
    timers: TimersV4,
}

/// Timers as versions 4 held them: all in memory.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TimersV4 {
    /// Pending timers.
    pub pending: BTreeMap<TimerKey, Pending>,
    /// Fired so far.
    pub fired: u64,
    /// Recalled so far.
    pub recalled: u64,
}

impl From<StateV4> for BrokerState {
    fn from(l: StateV4) -> Self {
        BrokerState {
            clock_ms: l.clock_ms,
            topics: l.topics,
            groups: l.groups,
            queues: l.queues,
            pops: pops(l.pops),
            offsets: l.offsets,
            receipt_seq: l.receipt_seq,
            applied_index: l.applied_index,
            log_start: l.log_start,
            topic_max_age_ms: l.topic_max_age_ms,
            timers: Timers::from_pending(l.timers.pending, l.timers.fired, l.timers.recalled),
            groups_from: 0,
            grouped_from: BTreeMap::new(),
            txns: Default::default(),
            dedup: Default::default(),
            files: QueueFiles::default(),
        }
    }
}

/// The state before transactions (snapshot version 5).
#[derive(Deserialize)]
pub struct StateV5 {
    clock_ms: u64,
    topics: BTreeMap<String, TopicConfig>,
    groups: BTreeMap<String, GroupConfig>,
    queues: BTreeMap<(String, u32), ConsumeQueue>,
    pops: BTreeMap<(String, String, u32), PopQueue>,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
    log_start: u64,
    topic_max_age_ms: BTreeMap<String, u64>,
    timers: Timers,
    groups_from: u64,
    grouped_from: BTreeMap<(String, u32), u64>,
}

impl From<StateV5> for BrokerState {
    fn from(l: StateV5) -> Self {
        BrokerState {
            clock_ms: l.clock_ms,
            topics: l.topics,
            groups: l.groups,
            queues: l.queues,
            pops: l.pops,
            offsets: l.offsets,
            receipt_seq: l.receipt_seq,
            applied_index: l.applied_index,
            log_start: l.log_start,
            topic_max_age_ms: l.topic_max_age_ms,
            timers: l.timers,
            groups_from: l.groups_from,
            grouped_from: l.grouped_from,
            txns: Default::default(),
            dedup: Default::default(),
            files: QueueFiles::default(),
        }
    }
}
