//! Snapshot layouts of older builds, read so that a replica upgraded in place restarts as it
//! was: [`LegacyState`] (before retention: no queue starts, no log start) and [`StateV2`]
//! (between retention and consume queues on disk: every queue's entries in the snapshot) and
//! [`StateV3`] (before scheduled messages: no timers).
//! Each converts to the next; the last to [`BrokerState`], with its queues in memory until
//! [`BrokerState::use_files`] writes them out.

use std::collections::BTreeMap;
use std::collections::VecDeque;

use serde::Deserialize;

use super::BrokerState;
use super::QueueFiles;
use super::consume_queue::ConsumeQueue;
use super::consume_queue::CqEntry;
use super::offsets::ConsumerOffsets;
use super::pop::PopQueue;
use crate::model::GroupConfig;
use crate::model::TopicConfig;

/// The state before retention.
#[derive(Deserialize)]
pub struct LegacyState {
    clock_ms: u64,
    topics: BTreeMap<String, TopicConfig>,
    groups: BTreeMap<String, GroupConfig>,
    queues: BTreeMap<(String, u32), LegacyQueue>,
    pops: BTreeMap<(String, String, u32), PopQueue>,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
}

#[derive(Deserialize)]
struct LegacyQueue {
    entries: VecDeque<CqEntry>,
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
    pops: BTreeMap<(String, String, u32), PopQueue>,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
    log_start: u64,
}

#[derive(Deserialize)]
struct QueueV2 {
    start: u64,
    entries: VecDeque<CqEntry>,
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
                .map(|(k, q)| (k, ConsumeQueue::from_entries(q.start, q.entries)))
                .collect(),
            pops: l.pops,
            offsets: l.offsets,
            receipt_seq: l.receipt_seq,
            applied_index: l.applied_index,
            log_start: l.log_start,
            topic_max_age_ms: BTreeMap::new(),
            timers: Default::default(),
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
    pops: BTreeMap<(String, String, u32), PopQueue>,
    offsets: ConsumerOffsets,
    receipt_seq: u64,
    applied_index: u64,
    log_start: u64,
    topic_max_age_ms: BTreeMap<String, u64>,
}

impl From<StateV3> for BrokerState {
    fn from(l: StateV3) -> Self {
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
            timers: Default::default(),
            files: QueueFiles::default(),
        }
    }
}
