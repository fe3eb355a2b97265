//! The broker's replicated state and how committed entries change it.
//!
//! [`BrokerState::apply_entry`] is a pure function of the state and one committed entry (time
//! comes from the entry): every replica computes the same outcomes. Submodules hold the pieces:
//! [`consume_queue`], [`pop`] (per-group receive state), `round` (applying a receive),
//! `inflight` (ack, forward to the dead-letter topic, change of invisibility), [`timer`]
//! (scheduled messages), [`txn`] (transactions), [`dedup`] (the idempotent producer's window)
//! and [`offsets`].

pub mod consume_queue;
pub mod cq_files;
pub mod dedup;
mod inflight;
pub mod legacy;
pub mod offsets;
pub mod pop;
mod reset;
mod round;
pub mod timer;
pub mod txn;

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_store::state_machine::Checkpoint;
use serde::Deserialize;
use serde::Serialize;

use self::consume_queue::ConsumeQueue;
use self::consume_queue::CqEntry;
use self::cq_files::CqFiles;
use self::offsets::ConsumerOffsets;
use self::pop::PopQueue;
use self::timer::Timers;
use self::txn::Transactions;
use self::txn::TxEnd;
use crate::command;
use crate::command::Command;
use crate::command::Receipt;
use crate::command::TimerKey;
use crate::command::TxKey;
use crate::limits;
use crate::model::GroupConfig;
use crate::model::QueueId;
use crate::model::QueueOffset;
use crate::model::TopicConfig;
use crate::model::tag_hash;

/// Why a command was refused (deterministically, on every replica).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reject {
    /// The topic does not exist.
    TopicNotFound,
    /// The queue id is out of range.
    QueueNotFound,
    /// The topic does not take this message type.
    WrongMessageType,
    /// The receipt is unknown or stale (acked, redelivered, or changed since).
    InvalidReceipt,
    /// The command breaks a bound of the log (see [`crate::limits`]) or did not decode: it
    /// changed nothing, on any replica.
    Invalid(String),
    /// No such scheduled message is pending: it was delivered or recalled already, or never
    /// scheduled (a recall, or a repeated fire).
    TimerNotPending,
    /// The receipt names a delivery the group was given that is no longer in flight:
    /// acknowledged, forwarded to the dead-letter topic, or delivered again since. (Appended
    /// last, as every variant.)
    NoLongerInFlight,
    /// No such transaction is waiting for a decision, and none was decided recently: never
    /// stored here, decided long ago, or a transaction id that names another message.
    TxUnknown,
    /// The transaction was decided already, this way.
    TxDecided(TxEnd),
    /// A check-back of a transaction whose check is not due (counted already, or parked).
    TxNotDue,
    /// The group holds [`limits::MAX_PENDING_TX`] undecided transactions.
    TooManyTx,
}

/// One message handed out by a receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Topic it was received from (a dead-letter topic for dead letters).
    pub topic: String,
    /// Its receipt: queue, offset and delivery sequence.
    pub receipt: Receipt,
    /// Where the message sits in the log.
    pub entry: CqEntry,
    /// 1 on first delivery.
    pub attempt: u32,
    /// Invisible until then.
    pub deadline_ms: u64,
}

/// The result of one command, returned to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Done (configuration changes, offset commits).
    Done,
    /// A message was stored at this queue offset.
    Sent {
        /// Queue.
        queue: QueueId,
        /// Offset.
        offset: QueueOffset,
    },
    /// Messages handed out by a receive.
    Popped {
        /// The deliveries, in hand-out order.
        deliveries: Vec<Delivery>,
        /// Messages moved to the dead-letter topic instead of being delivered again.
        dead_lettered: u32,
    },
    /// A delivery was acknowledged.
    Acked,
    /// A delivery's invisibility changed; `receipt` is the one to use from now on.
    Changed {
        /// The current receipt.
        receipt: Receipt,
        /// Invisible until then.
        deadline_ms: u64,
    },
    /// The command was refused.
    Rejected(Reject),
    /// A batched renewal: per receipt, in order, its new deadline or `None` if it was stale.
    Renewed(Vec<Option<u64>>),
    /// A message was stored for delivery at its time (a timer is pending).
    Scheduled {
        /// The queue it will be delivered to.
        queue: QueueId,
        /// Its timer (what a recall names).
        key: TimerKey,
    },
    /// A delivery was forwarded to its group's dead-letter topic by its consumer. (Variants
    /// are appended last: outcomes cross the wire between nodes of different versions.)
    DeadLettered,
    /// A half message was stored, undecided.
    Half {
        /// The queue a commit delivers it to.
        queue: QueueId,
        /// Its transaction.
        key: TxKey,
    },
    /// A check-back was counted: the proposer asks a producer now.
    TxChecked {
        /// Checks made so far, this one included.
        checks: u32,
    },
    /// A consumer group was moved ([`Command::Reset`]): per queue, its position before and
    /// after.
    Reset(Vec<ResetQueue>),
}

/// One queue a [`Command::Reset`] moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetQueue {
    /// Queue.
    pub queue: QueueId,
    /// The group's receive position before (everything below was handed out).
    pub from: QueueOffset,
    /// The position now.
    pub to: QueueOffset,
    /// Deliveries in flight it forgot.
    pub dropped: u32,
}

/// The whole replicated broker state of one Raft group.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    /// The state's clock: the highest entry time applied (never goes backwards, even if a new
    /// leader's wall clock is behind the old one's).
    pub clock_ms: u64,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Consumer groups by name.
    pub groups: BTreeMap<String, GroupConfig>,
    /// Consume queues by (topic, queue).
    pub queues: BTreeMap<(String, u32), ConsumeQueue>,
    /// Receive state by (group, topic, queue).
    pub pops: BTreeMap<(String, String, u32), PopQueue>,
    /// Offset-based consumption.
    pub offsets: ConsumerOffsets,
    /// Last receipt sequence number issued.
    pub receipt_seq: u64,
    /// Last log index applied.
    pub applied_index: u64,
    /// The first log index whose messages are retained: retention ([`Command::Retain`])
    /// deleted every message in entries below it. 0 until anything is deleted.
    pub log_start: u64,
    /// Topics with a retention age of their own (ms): their messages are deleted once older
    /// ([`Command::Expire`]), whatever the cluster's age.
    pub topic_max_age_ms: BTreeMap<String, u64>,
    /// Scheduled messages not yet delivered ([`timer`]).
    pub timers: Timers,
    /// The log index of the [`Command::FifoGroups`] marker (0 until it applies): FIFO receives
    /// tell message groups apart by the group hashes of messages stored at or after it. Every
    /// replica that applied those stored the hashes; a message stored before may have been
    /// stored by an older binary without one, so its group counts as not known everywhere.
    pub groups_from: u64,
    /// Queues that held messages when the marker applied: the offset from which their group
    /// hashes count, the next chunk boundary ([`cq_files::CHUNK_ENTRIES`]). A replica that
    /// kept such a queue since an older build appends to that build's last chunk file, whose
    /// entries have no room for a hash; past it every replica's chunks have one. (Queues
    /// created since count from 0.)
    pub grouped_from: BTreeMap<(String, u32), u64>,
    /// Transactions waiting for their decision ([`txn`]).
    pub txns: Transactions,
    /// Message ids stored recently, for the idempotent producer ([`dedup`]).
    pub dedup: dedup::Dedup,
    /// Where new queues keep their entries (files on a broker replica; memory when absent).
    #[serde(skip)]
    files: QueueFiles,
}

/// The consume-queue directory, if queues live in files. Not part of the state's value: two
/// states are equal whatever their queues are kept in.
#[derive(Debug, Default, Clone)]
struct QueueFiles(Option<Arc<CqFiles>>);

impl PartialEq for QueueFiles {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for QueueFiles {}

/// How far a `Retain`'s decision time may be ahead of its entry's time (see
/// [`command::Retain::decided_ms`]).
pub const RETAIN_CLOCK_SLACK_MS: u64 = 5;

/// Default delivery attempts for a group that was never configured.
const DEFAULT_MAX_ATTEMPTS: u32 = 17;

impl BrokerState {
    /// Keeps consume queues in `files` from now on (a broker replica; without this call they
    /// stay in memory). `restored_locally`: the state comes from this replica's own snapshot
    /// (or is empty), whose checkpoint left the queues' files in `files`; otherwise it came
    /// from a peer, and a queue holding entries cannot be served — their files (and the
    /// messages, in the log before the snapshot) are on the peer, not here.
    pub fn use_files(&mut self, files: Arc<CqFiles>, restored_locally: bool) -> Result<(), String> {
        // Likewise a pending timer: its message is in the log before the snapshot, on the peer
        // (review of issue 14).
        if !restored_locally && let Some(i) = self.timers.oldest_index() {
            return Err(format!(
                "a snapshot from a peer holds scheduled messages (the oldest in log entry {i}) \
                 that this replica does not have; a replica must catch up from the log \
                 (docs/operations.md, replacing a failed disk)"
            ));
        }
        if !restored_locally && let Some(i) = self.txns.oldest_index() {
            return Err(format!(
                "a snapshot from a peer holds undecided transactions (the oldest in log entry \
                 {i}) that this replica does not have; a replica must catch up from the log \
                 (docs/operations.md, replacing a failed disk)"
            ));
        }
        for ((topic, q), cq) in self.queues.iter_mut() {
            if !restored_locally && cq.is_detached() && cq.end() > cq.start() {
                return Err(format!(
                    "a snapshot from a peer holds messages of queue {topic}/{q} that this replica \
                     does not have; a replica must catch up from the log \
                     (docs/operations.md, replacing a failed disk)"
                ));
            }
            cq.attach(&files, topic, *q, self.applied_index)?;
        }
        self.timers.attach(&files, self.applied_index)?;
        files.remove_unclaimed();
        self.files = QueueFiles(Some(files));
        Ok(())
    }

    /// Keeps a restored state's queues in memory (no consume-queue directory: tests). Refuses
    /// one whose entries are in files (a snapshot of file-backed queues).
    pub fn keep_in_memory(&mut self) -> Result<(), String> {
        for ((t, q), cq) in self.queues.iter_mut() {
            if !cq.detached_to_memory() {
                return Err(format!(
                    "queue {t}/{q} is kept in files, and no consume-queue directory was given"
                ));
            }
        }
        if !self.timers.detached_to_memory() {
            return Err(
                "timers are kept in files, and no consume-queue directory was given".into(),
            );
        }
        Ok(())
    }

    /// Prepares a snapshot: writes every queue's pending entries and says which files must
    /// be synced before the snapshot is persisted and which may go after (the caller adds the
    /// encoded state). O(queues).
    pub fn checkpoint(&mut self) -> std::io::Result<Checkpoint> {
        let mut cp = Checkpoint::default();
        for cq in self.queues.values_mut() {
            let q = cq.checkpoint()?;
            cp.sync.extend(q.sync);
            cp.obsolete.extend(q.obsolete);
        }
        let (sync, obsolete) = self.timers.checkpoint()?;
        cp.sync.extend(sync);
        cp.obsolete.extend(obsolete);
        if let Some(f) = &self.files.0 {
            cp.sync_dirs.push(f.dir().to_path_buf());
        }
        Ok(cp)
    }

    /// A consume-queue read failed (the replica must stop: an apply that could not see an
    /// entry may have diverged, and a read must not skip it). Sticky.
    pub fn storage_error(&self) -> Option<String> {
        self.files.0.as_ref().and_then(|f| f.error())
    }

    /// Applies one committed entry. An entry that does not decode is a fatal error for the
    /// replica: continuing would diverge from the group.
    pub fn apply_entry(&mut self, index: u64, bytes: &[u8]) -> Result<Vec<Outcome>, String> {
        let entry = command::decode_entry(bytes)?;
        if index <= self.applied_index && self.applied_index != 0 {
            return Err(format!(
                "entry {index} applied after {}: the log went backwards",
                self.applied_index
            ));
        }
        self.applied_index = index;
        self.clock_ms = self.clock_ms.max(entry.now_ms);
        let now = self.clock_ms;
        // Timers coming due move from their slot's files into memory (`timer`).
        self.timers.advance(now);
        Ok(entry
            .commands
            .into_iter()
            .map(|l| match l.command {
                Ok(cmd) => self.apply(index, now, cmd, l.pos, l.len),
                Err(why) => Outcome::Rejected(Reject::Invalid(format!("undecodable: {why}"))),
            })
            .collect())
    }

    fn apply(&mut self, index: u64, now: u64, cmd: Command, pos: u32, len: u32) -> Outcome {
        // Checked when proposed too; this is the line that keeps a bad entry (older binary,
        // bug) from poisoning every replica: it becomes a refused no-op.
        if let Err(why) = limits::check(&cmd) {
            return Outcome::Rejected(Reject::Invalid(why));
        }
        match cmd {
            Command::UpsertTopic(t) => {
                self.upsert_topic(t);
                Outcome::Done
            }
            Command::UpsertGroup(g) => {
                self.groups.insert(g.name.clone(), g);
                Outcome::Done
            }
            // Auto-creation is proposed by whichever node saw the name missing in its own
            // (possibly lagging) copy of the state: it must never replace a configuration
            // that exists by the time it applies.
            Command::CreateTopic(t) => {
                if !self.topics.contains_key(&t.name) {
                    self.upsert_topic(t);
                }
                Outcome::Done
            }
            Command::CreateGroup(g) => {
                self.groups.entry(g.name.clone()).or_insert(g);
                Outcome::Done
            }
            Command::Send(m) => self.once(now, &m.topic, &m.message_id, |s| match s.route(&m) {
                Ok(queue) => s.store(index, now, &m, queue, pos, len),
                Err(r) => Outcome::Rejected(r),
            }),
            Command::Schedule(m) => self.once(now, &m.topic, &m.message_id, |s| {
                s.schedule(index, now, &m, pos, len)
            }),
            Command::Fire(f) => self.fire(index, now, &f, pos, len),
            Command::Recall(r) => self.recall(&r),
            Command::Half(h) => self.once(now, &h.message.topic, &h.message.message_id, |s| {
                s.half(index, now, &h, pos, len)
            }),
            Command::CommitTx(c) => self.commit_tx(index, now, &c, pos, len),
            Command::RollbackTx(r) => self.rollback_tx(&r),
            Command::CheckTx(c) => self.check_tx(now, &c),
            Command::Pop(p) => self.pop(now, &p),
            Command::Ack(a) => self.ack(&a),
            Command::DeadLetter(a) => self.forward_to_dead_letter(now, &a),
            Command::Nack(a) => self.nack(now, &a),
            Command::Dedup(w) => {
                self.dedup.set(now, w);
                Outcome::Done
            }
            // The entry's time moved the clock (and loaded timers) above.
            Command::Advance => Outcome::Done,
            Command::FifoGroups => {
                if self.groups_from == 0 {
                    self.groups_from = index;
                    for (key, cq) in &self.queues {
                        let from = cq.end().next_multiple_of(cq_files::CHUNK_ENTRIES);
                        if from > 0 {
                            self.grouped_from.insert(key.clone(), from);
                        }
                    }
                }
                Outcome::Done
            }
            Command::ChangeInvisible(c) => self.change_invisible(now, c, true),
            Command::Renew(c) => self.change_invisible(now, c, false),
            Command::RenewMany(list) => Outcome::Renewed(
                list.into_iter()
                    .map(|c| match self.change_invisible(now, c, false) {
                        Outcome::Changed { deadline_ms, .. } => Some(deadline_ms),
                        _ => None,
                    })
                    .collect(),
            ),
            Command::CommitOffset(c) => {
                self.offsets
                    .commit(&c.group, &c.topic, c.queue.0, c.offset.0, c.reset);
                Outcome::Done
            }
            Command::Reset(r) => self.reset(&r),
            Command::Retain(r) => {
                // A few ms of slack: the leader decides on its clock's estimate and stamps the
                // entry moments later (within the slew).
                if r.decided_ms > now.saturating_add(RETAIN_CLOCK_SLACK_MS) {
                    return Outcome::Rejected(Reject::Invalid(format!(
                        "retention decided at {} ms, ahead of the log's clock ({now} ms)",
                        r.decided_ms
                    )));
                }
                self.retain(index, r.upto);
                Outcome::Done
            }
            Command::TopicRetention(t) => {
                if !self.topics.contains_key(&t.topic) {
                    return Outcome::Rejected(Reject::TopicNotFound);
                }
                match t.max_age_ms {
                    Some(ms) => self.topic_max_age_ms.insert(t.topic, ms),
                    None => self.topic_max_age_ms.remove(&t.topic),
                };
                Outcome::Done
            }
            Command::Expire(e) => {
                if e.decided_ms > now.saturating_add(RETAIN_CLOCK_SLACK_MS) {
                    return Outcome::Rejected(Reject::Invalid(format!(
                        "expiry decided at {} ms, ahead of the log's clock ({now} ms)",
                        e.decided_ms
                    )));
                }
                // The cutoff is taken at the leader's decision (never later than the entry):
                // a message is never deleted before its age passed when the leader looked.
                self.expire(now.min(e.decided_ms));
                Outcome::Done
            }
        }
    }

    /// Applies a store of `topic`/`message_id` once within the deduplication window: a repeat
    /// gets the first store's outcome and stores nothing.
    fn once(
        &mut self,
        now: u64,
        topic: &str,
        message_id: &str,
        store: impl FnOnce(&mut Self) -> Outcome,
    ) -> Outcome {
        let key = self.dedup.key(topic, message_id);
        if let Some(first) = self.dedup.seen(now, key) {
            return first;
        }
        let o = store(self);
        self.dedup.record(now, key, &o);
        o
    }

    /// The queue a message to send goes to, or why it is refused.
    fn route(&self, m: &crate::model::StoredMessage) -> Result<QueueId, Reject> {
        let Some(topic) = self.topics.get(&m.topic) else {
            return Err(Reject::TopicNotFound);
        };
        if !topic.kind.accepts(m.kind) {
            return Err(Reject::WrongMessageType);
        }
        let Some(q) = m.queue.0.checked_rem(topic.queues) else {
            return Err(Reject::QueueNotFound);
        };
        Ok(QueueId(q))
    }

    /// Appends a message (its body at `pos..pos+len` of entry `index`) to its queue.
    fn store(
        &mut self,
        index: u64,
        now: u64,
        m: &crate::model::StoredMessage,
        queue: QueueId,
        pos: u32,
        len: u32,
    ) -> Outcome {
        let entry = CqEntry {
            log_index: index,
            pos,
            len,
            tag_hash: tag_hash(m.tag.as_deref()),
            store_ms: now,
            group_hash: crate::model::message_group_hash(m.message_group.as_deref()),
        };
        let files = self.files.0.as_ref();
        let offset = self
            .queues
            .entry((m.topic.clone(), queue.0))
            .or_insert_with_key(|(t, q)| ConsumeQueue::new(files, t, *q))
            .push(entry);
        Outcome::Sent {
            queue,
            offset: QueueOffset(offset),
        }
    }

    /// The cutoff (ms) before which `topic`'s messages are deleted at `now`, if it has an age
    /// of its own.
    pub fn topic_cutoff(&self, topic: &str, now: u64) -> Option<u64> {
        self.topic_max_age_ms
            .get(topic)
            .map(|age| now.saturating_sub(*age))
    }

    /// True if some topic with an age of its own holds a message older than it at `now`.
    pub fn expiry_due(&self, now: u64) -> bool {
        self.topic_max_age_ms.iter().any(|(topic, age)| {
            let cutoff = now.saturating_sub(*age);
            self.queues
                .range((topic.clone(), 0)..=(topic.clone(), u32::MAX))
                .any(|(_, cq)| cq.get(cq.start()).is_some_and(|e| e.store_ms < cutoff))
        })
    }

    /// Deletes, in each topic with its own age, the messages stored before `at - age`: each
    /// queue starts at its first younger message (store times never decrease along a queue),
    /// and receive state follows, as for [`Self::retain`].
    fn expire(&mut self, at: u64) {
        let mut starts = BTreeMap::new();
        for (topic, age) in &self.topic_max_age_ms {
            let cutoff = at.saturating_sub(*age);
            for (key, cq) in self
                .queues
                .range_mut((topic.clone(), 0)..=(topic.clone(), u32::MAX))
            {
                let before = cq.start();
                if cq.expire_before(cutoff) > before {
                    starts.insert(key.clone(), cq.start());
                }
            }
        }
        if !starts.is_empty() {
            self.follow_starts(&starts);
        }
    }

    /// Receive state follows queues that now start later: what a group had not taken or
    /// acknowledged below the new start is gone for it.
    fn follow_starts(&mut self, starts: &BTreeMap<(String, u32), u64>) {
        for ((_, topic, q), pq) in self.pops.iter_mut() {
            if let Some(start) = starts.get(&(topic.clone(), *q)).copied() {
                pq.next = pq.next.max(start);
                pq.inflight = pq.inflight.split_off(&start);
                pq.skipped = pq.skipped.split_off(&start);
            }
        }
    }

    /// Deletes every message in log entries up to `upto` (clamped below `index`, the entry
    /// applying this): consume queues start later, and receive state follows them — what a
    /// group had not taken or acknowledged there is gone for it, like a RocketMQ consumer
    /// behind the oldest commit-log file. Pull consumers' committed offsets stay as they are;
    /// a pull below a queue's start is answered with the start (`crate::reads`).
    fn retain(&mut self, index: u64, upto: u64) {
        let mut upto = upto.min(index.saturating_sub(1));
        // A pending timer's message is read from its entry when it fires: keep that entry.
        if let Some(oldest) = self.timers.oldest_index() {
            upto = upto.min(oldest.saturating_sub(1));
        }
        // So is an undecided transaction's: a commit copies the message from it.
        if let Some(oldest) = self.txns.oldest_index() {
            upto = upto.min(oldest.saturating_sub(1));
        }
        if upto < self.log_start {
            return;
        }
        self.log_start = upto + 1;
        let mut starts = BTreeMap::new();
        for (key, cq) in self.queues.iter_mut() {
            // Only a dead-letter queue points back at older entries.
            let in_log_order = !key.0.starts_with(crate::model::DLQ_PREFIX);
            starts.insert(key.clone(), cq.trim(upto, in_log_order));
        }
        self.follow_starts(&starts);
    }

    fn upsert_topic(&mut self, t: TopicConfig) {
        match self.topics.get_mut(&t.name) {
            // Queues are never removed: that would orphan their messages.
            Some(cur) => {
                cur.queues = cur.queues.max(t.queues);
                cur.kind = t.kind;
            }
            None => {
                self.topics.insert(t.name.clone(), t);
            }
        }
    }

    /// True if a receive by `group` on `topic` (one queue, or any) could hand something out at
    /// `now`, ignoring filters. Lets a long poll wait instead of proposing empty receives.
    pub fn has_visible(&self, group: &str, topic: &str, queue: Option<u32>, now_ms: u64) -> bool {
        let Some(t) = self.topics.get(topic) else {
            return false;
        };
        let queues: Vec<u32> = match queue {
            Some(q) => vec![q],
            None => (0..t.queues).collect(),
        };
        let fifo = self.groups.get(group).is_some_and(|g| g.fifo);
        queues.into_iter().any(|q| {
            let Some(cq) = self.queues.get(&(topic.to_string(), q)) else {
                return false;
            };
            match self.pops.get(&(group.to_string(), topic.to_string(), q)) {
                Some(pq) if fifo && self.groups_from != 0 => {
                    let rule = self.group_rule(topic, q);
                    round::fifo_could_take(cq, pq, now_ms, self.log_start, rule)
                }
                // Before the marker, as older builds read it (see `pop`).
                Some(pq) if fifo => {
                    !pq.inflight.values().any(|i| i.deadline_ms > now_ms)
                        && pq.has_visible(cq.end(), now_ms)
                }
                Some(pq) => pq.has_visible(cq.end(), now_ms),
                None => cq.end() > cq.start(),
            }
        })
    }

    /// Which group hashes of queue (`topic`, `q`) count.
    fn group_rule(&self, topic: &str, q: u32) -> round::GroupRule {
        round::GroupRule {
            groups_from: self.groups_from,
            queue_from: self
                .grouped_from
                .get(&(topic.to_string(), q))
                .copied()
                .unwrap_or(0),
        }
    }

    /// The earliest time an in-flight message of `group` on `topic` becomes visible again.
    pub fn next_expiry(&self, group: &str, topic: &str) -> Option<u64> {
        self.pops
            .range(
                (group.to_string(), topic.to_string(), 0)
                    ..=(group.to_string(), topic.to_string(), u32::MAX),
            )
            .filter_map(|(_, pq)| pq.next_expiry())
            .min()
    }

    /// The consume queue of (`topic`, `queue`), if it has entries.
    pub fn queue(&self, topic: &str, queue: u32) -> Option<&ConsumeQueue> {
        self.queues.get(&(topic.to_string(), queue))
    }

    /// Checks every invariant (tests run it after every apply; so does the simulator).
    pub fn check_invariants(&self) {
        self.timers.check_invariants();
        self.txns.check_invariants();
        self.dedup.check_invariants();
        for ((topic, q), cq) in &self.queues {
            let t = self.topics.get(topic).expect("queue of an unknown topic");
            assert!(*q < t.queues, "queue {q} beyond {topic}'s {}", t.queues);
            cq.check_invariants();
        }
        for ((_, topic, q), pq) in &self.pops {
            let cq = self.queues.get(&(topic.clone(), *q));
            let end = cq.map_or(0, |c| c.end());
            pq.check_invariants(end, self.receipt_seq);
            let start = cq.map_or(0, |c| c.start());
            if let Some(first) = pq.inflight.keys().next() {
                assert!(
                    *first >= start,
                    "in-flight offset {first} below the queue start {start}"
                );
            }
            if let Some(first) = pq.skipped.first() {
                assert!(
                    *first >= start,
                    "skipped offset {first} below the queue start {start}"
                );
            }
        }
    }
}
