//! Scheduled (DELAY) messages waiting for their time: replicated timer state.
//!
//! A [`crate::command::Command::Schedule`] stores the message in the log and a timer here,
//! keyed by due time and log position; no consume queue sees the message. The leader's timer
//! task (`crate::ticker`) proposes one [`crate::command::Fire`] per due timer, carrying the
//! message; applying it removes the timer and appends the copy to its queue. Because the timer
//! state is replicated, a new leader continues where the old one stopped: a timer fires once
//! (the first `Fire` applied removes it, a repeat finds nothing), never before its time (a
//! `Fire` whose timer is not due at the entry's time is refused), and is never lost (it stays
//! until a `Fire` or a recall removes it, and retention keeps its entry: [`Timers::oldest_index`]).
//!
//! Timers due within the current and the next slot ([`SLOT_MS`], ten minutes) are held in
//! memory ("near", about 70 bytes each). Later ones wait in one append-only queue per slot
//! ("far": consume-queue files under the name [`TIMER_QUEUE`], 40 bytes a timer, in log
//! order), so a million timers pending for hours or days take disk, not memory. When the
//! state's clock enters a slot, the next slot's queue is read into memory and its files are
//! retired at the next checkpoint; a leader with nothing else to propose nudges the clock
//! with [`crate::command::Command::Advance`]. Which timers are near and which far is state,
//! decided by the entries' times, so every replica agrees; a recall of a far timer finds it by
//! binary search (a slot's queue is in log order) and is remembered until its slot loads.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

use super::BrokerState;
use super::Outcome;
use super::Reject;
use super::consume_queue::ConsumeQueue;
use super::consume_queue::CqEntry;
use super::cq_files::CqFiles;
use crate::command;
use crate::command::Fire;
use crate::command::Recall;
use crate::command::TimerKey;
use crate::model::QueueId;
use crate::model::StoredMessage;

/// Width of a timer slot: the unit in which far timers are kept and loaded.
#[cfg(not(madsim))]
pub const SLOT_MS: u64 = 600_000;
/// In the whole-cluster simulation, whose delays are seconds, slots of half a second: most
/// timers wait in slot files, and slots load through kills, partitions and power losses.
#[cfg(madsim)]
pub const SLOT_MS: u64 = 500;

/// Timers read into memory per applied entry while a slot loads (about 12 ms for 65,536): a
/// million due in the same second load over a few seconds of a slot's ten minutes, not in one
/// long apply. A slot starting within half a slot is read whole at once.
#[cfg(not(madsim))]
pub const LOAD_BATCH: u64 = 65_536;
/// In the simulation, a few a time: slots load over several entries, through every fault.
#[cfg(madsim)]
pub const LOAD_BATCH: u64 = 4;

/// The queue name of far timers' slots (queue id: the slot). Not a topic name any client or
/// admin command can use (they allow `[%|a-zA-Z0-9_-]`), so its files never meet a topic's.
pub const TIMER_QUEUE: &str = "\u{0}timers";

/// What identifies the message behind a timer to a recall or a fire: a hash of its topic and
/// message id (kept instead of the strings: a timer's memory is the key and this).
pub fn identity(topic: &str, message_id: &str) -> u64 {
    crate::model::tag_hash(Some(&format!("{topic}\u{0}{message_id}")))
}

/// What a pending timer remembers of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// [`identity`] of the message.
    pub identity: u64,
    /// Length of the message's body in its entry (the key has its position).
    pub len: u32,
}

/// The far timers of one slot: a queue of records in log order (due time in `tag_hash`, the
/// message's identity in `group_hash`).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    queue: ConsumeQueue,
    /// Records below this offset were read into memory (the slot is loading).
    loaded: u64,
}

fn record(key: &TimerKey, p: &Pending, now: u64) -> CqEntry {
    CqEntry {
        log_index: key.log_index,
        pos: key.pos,
        len: p.len,
        tag_hash: key.due_ms,
        store_ms: now,
        group_hash: p.identity,
    }
}

fn unrecord(e: &CqEntry) -> (TimerKey, Pending) {
    let key = TimerKey {
        due_ms: e.tag_hash,
        log_index: e.log_index,
        pos: e.pos,
    };
    (
        key,
        Pending {
            identity: e.group_hash,
            len: e.len,
        },
    )
}

/// Slot queues read into memory, whose files go once a checkpoint no longer needs them. Not
/// part of the state's value.
#[derive(Debug, Default)]
struct Retiring(Vec<ConsumeQueue>);

impl PartialEq for Retiring {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Retiring {}

/// The pending timers of one group, and counts of what became of the others.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// Slot width (ms): [`SLOT_MS`], smaller in tests.
    slot_ms: u64,
    /// Records read per entry while a slot loads: [`LOAD_BATCH`], smaller in tests.
    load_batch: u64,
    /// Pending timers due before `loaded_to`, by key: all of them but the records of slots
    /// still loading, at or past their `loaded` offset.
    near: BTreeMap<TimerKey, Pending>,
    /// A slot boundary: timers due from here on are far.
    loaded_to: u64,
    /// Far timers, by slot (due / `slot_ms`, at most `u32::MAX`); the slots before
    /// `loaded_to`'s are loading.
    far: BTreeMap<u32, Bucket>,
    /// Far timers recalled (or fired early: never) since their slot's queue was written; they
    /// are dropped when it loads.
    recalled_far: BTreeSet<TimerKey>,
    /// Timers fired so far.
    pub fired: u64,
    /// Timers recalled so far.
    pub recalled: u64,
    #[serde(skip)]
    retiring: Retiring,
}

impl Default for Timers {
    fn default() -> Self {
        Self::with_slot(SLOT_MS, LOAD_BATCH)
    }
}

impl Timers {
    /// No timers, slots of `slot_ms`, loaded `load_batch` records an entry (tests use small
    /// ones to cross slots quickly and load them over several entries).
    pub fn with_slot(slot_ms: u64, load_batch: u64) -> Self {
        assert!(slot_ms > 0 && load_batch > 0);
        Self {
            slot_ms,
            load_batch,
            near: BTreeMap::new(),
            loaded_to: 0,
            far: BTreeMap::new(),
            recalled_far: BTreeSet::new(),
            fired: 0,
            recalled: 0,
            retiring: Retiring::default(),
        }
    }

    /// Timers as an older snapshot held them: all in memory.
    pub(super) fn from_pending(
        pending: BTreeMap<TimerKey, Pending>,
        fired: u64,
        recalled: u64,
    ) -> Self {
        let mut t = Self::default();
        if let Some(last) = pending.keys().map(|k| k.due_ms).max() {
            t.loaded_to = t.slot_start(t.slot(last).saturating_add(1));
        }
        t.near = pending;
        t.fired = fired;
        t.recalled = recalled;
        t
    }

    fn slot(&self, ms: u64) -> u32 {
        u32::try_from(ms / self.slot_ms).unwrap_or(u32::MAX)
    }

    fn slot_start(&self, slot: u32) -> u64 {
        u64::from(slot).saturating_mul(self.slot_ms)
    }

    /// Where near ends when the clock reads `now`: after the next slot.
    fn horizon(&self, now: u64) -> u64 {
        self.slot_start(self.slot(now).saturating_add(2))
    }

    /// True if the clock at `now` would load another slot, or a slot is loading: an idle
    /// leader proposes an [`crate::command::Command::Advance`] then.
    pub fn needs_advance(&self, now: u64) -> bool {
        self.horizon(now) > self.loaded_to || self.loading().is_some()
    }

    /// The first slot still loading, if any.
    fn loading(&self) -> Option<u32> {
        let bound = self.slot(self.loaded_to);
        self.far.keys().next().copied().filter(|s| *s < bound)
    }

    /// Moves near's end to the horizon of `now`, and reads up to `load_batch` records of the
    /// slots it passed into memory (all of a slot that starts within half a slot of `now`);
    /// a slot read whole retires its queue. A record that cannot be read stops the replica
    /// (recorded by the queue's files), as for consume queues.
    pub fn advance(&mut self, now: u64) {
        self.loaded_to = self.loaded_to.max(self.horizon(now));
        let mut budget = self.load_batch;
        while let Some(slot) = self.loading() {
            let urgent = self.slot_start(slot) <= now.saturating_add(self.slot_ms / 2);
            let b = self.far.get_mut(&slot).expect("a loading slot");
            let end = b.queue.end();
            let upto = if urgent {
                end
            } else {
                end.min(b.loaded.saturating_add(budget))
            };
            if upto == b.loaded && upto < end {
                break; // this entry's budget is spent
            }
            // Unreadable: recorded, and the replica stops after this entry.
            let records = b.queue.entries(b.loaded, upto).unwrap_or_default();
            budget = budget.saturating_sub(upto - b.loaded);
            b.loaded = upto;
            // Built in bulk and merged (one by one, a million took 0.2 s).
            let mut loaded: BTreeMap<TimerKey, Pending> = records
                .iter()
                .map(unrecord)
                .filter(|(key, _)| !self.recalled_far.remove(key))
                .collect();
            self.near.append(&mut loaded);
            if upto < end {
                break;
            }
            if let Some(b) = self.far.remove(&slot) {
                self.retiring.0.push(b.queue);
            }
        }
    }

    /// Adds a timer (stored by the entry applied at `now`; far slots' queues are in `files`
    /// when given).
    pub fn schedule(&mut self, key: TimerKey, p: Pending, now: u64, files: Option<&Arc<CqFiles>>) {
        if key.due_ms < self.loaded_to {
            self.near.insert(key, p);
            return;
        }
        let slot = self.slot(key.due_ms);
        let bucket = self.far.entry(slot).or_insert_with(|| Bucket {
            queue: ConsumeQueue::new(files, TIMER_QUEUE, slot),
            loaded: 0,
        });
        bucket.queue.push(record(&key, &p, now));
    }

    /// The far timer `key`'s record, if its slot's queue holds it past what was read into
    /// memory (by binary search: a slot's queue is in log order), and it was not recalled.
    fn find_far(&self, key: &TimerKey) -> Option<Pending> {
        if self.recalled_far.contains(key) {
            return None;
        }
        let b = self.far.get(&self.slot(key.due_ms))?;
        let q = &b.queue;
        let (mut lo, mut hi) = (q.start(), q.end());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = q.get(mid)?;
            match (e.log_index, e.pos).cmp(&(key.log_index, key.pos)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let (k, p) = unrecord(&e);
                    return (k == *key && mid >= b.loaded).then_some(p);
                }
            }
        }
        None
    }

    /// Removes the timer `key` if it is pending for the message `identity`; true if it was.
    pub fn take(&mut self, key: &TimerKey, identity: u64) -> bool {
        if let Some(p) = self.near.get(key) {
            let hit = p.identity == identity;
            if hit {
                self.near.remove(key);
            }
            return hit;
        }
        let hit = self.find_far(key).is_some_and(|p| p.identity == identity);
        if hit {
            self.recalled_far.insert(*key);
        }
        hit
    }

    /// True if `key` is pending.
    pub fn contains(&self, key: &TimerKey) -> bool {
        self.near.contains_key(key) || self.find_far(key).is_some()
    }

    /// Up to `max` pending timers due at `now_ms`, earliest first: those in memory, which are
    /// all that are due once an entry at `now_ms` applied (a slot is read whole half a slot
    /// before it starts; the leader proposes an `Advance` first when it would).
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<(TimerKey, Pending)> {
        self.near
            .iter()
            .take_while(|(k, _)| k.due_ms <= now_ms)
            .take(max)
            .map(|(k, p)| (*k, *p))
            .collect()
    }

    /// The earliest due time pending, or for far timers the start of their first slot (no
    /// later than their due time).
    pub fn next_due(&self) -> Option<u64> {
        self.near
            .keys()
            .next()
            .map(|k| k.due_ms)
            .or_else(|| self.far.keys().next().map(|s| self.slot_start(*s)))
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        let far: u64 = self.far.values().map(|b| b.queue.end() - b.loaded).sum();
        self.near.len() + far as usize - self.recalled_far.len()
    }

    /// True if none is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many pending timers are held in memory (the rest are in their slots' files).
    pub fn in_memory(&self) -> usize {
        self.near.len()
    }

    /// The end offsets of the slot queues that may have files: far slots, and slots read into
    /// memory whose files the next checkpoint retires (tests count files by them).
    pub fn slot_queue_ends(&self) -> Vec<u64> {
        let far = self.far.values().map(|b| b.queue.end());
        far.chain(self.retiring.0.iter().map(|q| q.end())).collect()
    }

    /// The lowest log index holding a pending timer's message: retention must keep it. O(near
    /// plus slots): called when a retention entry applies (every few seconds), not per
    /// message. Exact wherever a timer is kept, since replicas may keep the same timer in
    /// different places (an older build keeps all in memory; a replica restored from a
    /// version 4 snapshot draws the line where that snapshot's timers ended), and retention
    /// must delete the same on all of them. (Review of issue 14: recalled far timers held
    /// their slot's first entry here, and replicas could retain differently.)
    pub fn oldest_index(&self) -> Option<u64> {
        let near = self.near.keys().map(|k| k.log_index).min();
        let far = self
            .far
            .values()
            .filter_map(|b| self.first_pending(b))
            .min();
        near.into_iter().chain(far).min()
    }

    /// The log index of a slot's first pending record not read into memory (the queue is in
    /// log order): past those recalled. One that cannot be read answers its slot's start
    /// (the error is recorded and the replica stops after the entry).
    fn first_pending(&self, b: &Bucket) -> Option<u64> {
        let q = &b.queue;
        for off in b.loaded..q.end() {
            let Some(e) = q.get(off) else {
                return q.get(q.start()).map(|e| e.log_index).or(Some(0));
            };
            if !self.recalled_far.contains(&unrecord(&e).0) {
                return Some(e.log_index);
            }
        }
        None
    }

    /// Attaches the far slots' queues to their files after a restore (see
    /// [`ConsumeQueue::attach`]).
    pub(super) fn attach(&mut self, files: &Arc<CqFiles>, applied: u64) -> Result<(), String> {
        for (slot, b) in self.far.iter_mut() {
            b.queue.attach(files, TIMER_QUEUE, *slot, applied)?;
        }
        Ok(())
    }

    /// Keeps restored far slots in memory (no files: tests); false if one holds timers.
    pub(super) fn detached_to_memory(&mut self) -> bool {
        self.far.values_mut().all(|b| b.queue.detached_to_memory())
    }

    /// Writes the far slots' pending records; what to sync before the snapshot, and what to
    /// remove after it (the files of slots read into memory).
    pub(super) fn checkpoint(&mut self) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        let (mut sync, mut obsolete) = (Vec::new(), Vec::new());
        for b in self.far.values_mut() {
            let c = b.queue.checkpoint()?;
            sync.extend(c.sync);
            obsolete.extend(c.obsolete);
        }
        for q in self.retiring.0.drain(..) {
            obsolete.extend(q.retire());
        }
        Ok((sync, obsolete))
    }

    /// Checks invariants (tests and the simulator).
    pub fn check_invariants(&self) {
        if let Some(k) = self.near.keys().next_back() {
            assert!(
                k.due_ms < self.loaded_to,
                "a near timer due past the horizon"
            );
        }
        let bound = self.slot(self.loaded_to);
        for (slot, b) in &self.far {
            let (start, end) = (b.queue.start(), b.queue.end());
            assert!(
                b.loaded >= start && b.loaded <= end,
                "slot {slot} loaded past its end"
            );
            assert!(
                *slot < bound || b.loaded == start,
                "slot {slot} is past the horizon {} and loading",
                self.loaded_to
            );
            b.queue.check_invariants();
        }
        for k in &self.recalled_far {
            assert!(
                self.far.contains_key(&self.slot(k.due_ms)),
                "a recall of no slot"
            );
        }
    }
}

/// Applying the timer commands (entry `index`, the command's body at `pos..pos+len`).
impl BrokerState {
    /// [`command::Command::Schedule`]: a timer for `m`, or the message stored at once if it is
    /// due already.
    pub(super) fn schedule(
        &mut self,
        index: u64,
        now: u64,
        m: &StoredMessage,
        pos: u32,
        len: u32,
    ) -> Outcome {
        let queue = match self.route(m) {
            Ok(q) => q,
            Err(r) => return Outcome::Rejected(r),
        };
        match m.delivery_ms {
            // Due already (a delivery time in the past, or one that passed while the send
            // waited): delivered at once, as RocketMQ does.
            Some(due) if due > now => {
                let key = TimerKey {
                    due_ms: due,
                    log_index: index,
                    pos,
                };
                let p = Pending {
                    identity: identity(&m.topic, &m.message_id),
                    len,
                };
                self.timers.schedule(key, p, now, self.files.0.as_ref());
                Outcome::Scheduled { queue, key }
            }
            _ => self.store(index, now, m, queue, pos, len),
        }
    }

    /// [`command::Command::Fire`]: delivers the copy the fire carries if its timer is pending
    /// and due.
    pub(super) fn fire(&mut self, index: u64, now: u64, f: &Fire, pos: u32, len: u32) -> Outcome {
        // Never early: the timer must be due at the entry's time (a leader decides on its
        // clock's estimate; the entry's stamp is never behind it).
        if f.key.due_ms > now {
            return Outcome::Rejected(Reject::Invalid(format!(
                "timer due at {} ms fired at {now} ms",
                f.key.due_ms
            )));
        }
        // The queue the schedule routed it to (topics and queues are never removed).
        let Some(queue) = self
            .topics
            .get(&f.message.topic)
            .and_then(|t| f.message.queue.0.checked_rem(t.queues))
            .map(QueueId)
        else {
            return Outcome::Rejected(Reject::QueueNotFound);
        };
        let id = identity(&f.message.topic, &f.message.message_id);
        if !self.timers.take(&f.key, id) {
            return Outcome::Rejected(Reject::TimerNotPending);
        }
        self.timers.fired += 1;
        let prefix = command::FIRE_PREFIX;
        self.store(
            index,
            now,
            &f.message,
            queue,
            pos + prefix,
            len.saturating_sub(prefix),
        )
    }

    /// [`command::Command::Recall`]: removes a pending timer.
    pub(super) fn recall(&mut self, r: &Recall) -> Outcome {
        if self.timers.take(&r.key, identity(&r.topic, &r.message_id)) {
            self.timers.recalled += 1;
            Outcome::Done
        } else {
            Outcome::Rejected(Reject::TimerNotPending)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(due_ms: u64, log_index: u64) -> TimerKey {
        TimerKey {
            due_ms,
            log_index,
            pos: 13,
        }
    }

    #[test]
    fn due_timers_come_earliest_first_and_fire_once() {
        let mut t = Timers::default();
        t.advance(0);
        let p = |identity| Pending { identity, len: 5 };
        t.schedule(key(300, 1), p(7), 0, None);
        t.schedule(key(100, 2), p(8), 0, None);
        t.schedule(key(100, 3), p(9), 0, None);
        assert_eq!(t.in_memory(), 3);
        let keys = |v: Vec<(TimerKey, Pending)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(t.due(99, 10)), vec![]);
        assert_eq!(keys(t.due(200, 10)), vec![key(100, 2), key(100, 3)]);
        assert_eq!(keys(t.due(200, 1)), vec![key(100, 2)]);
        assert_eq!(t.next_due(), Some(100));
        assert_eq!(t.oldest_index(), Some(1));
        // The wrong message does not take a timer; the right one does, once.
        assert!(!t.take(&key(100, 2), 9));
        assert!(t.take(&key(100, 2), 8));
        assert!(!t.take(&key(100, 2), 8));
        assert_eq!(t.len(), 2);
    }

    /// Timers past the next slot wait in their slot's queue, not in memory; a recall finds
    /// one there; entering the slot before reads it in (recalled ones dropped), in due order.
    #[test]
    fn far_timers_wait_in_their_slot_and_load_a_slot_ahead() {
        let mut t = Timers::with_slot(1_000, 1_000);
        t.advance(0); // near: due before 2,000
        let p = |identity| Pending { identity, len: 5 };
        t.schedule(key(1_500, 1), p(1), 0, None);
        t.schedule(key(5_900, 2), p(2), 0, None);
        t.schedule(key(5_100, 3), p(3), 0, None);
        t.schedule(key(7_000, 4), p(4), 0, None);
        assert_eq!((t.len(), t.in_memory()), (4, 1));
        assert_eq!(t.oldest_index(), Some(1));
        assert!(t.contains(&key(5_100, 3)) && !t.contains(&key(5_100, 9)));
        // Recalled in its slot: gone for good, though still in the queue's file.
        assert!(!t.take(&key(5_900, 2), 7), "not that message");
        assert!(t.take(&key(5_900, 2), 2));
        assert!(!t.take(&key(5_900, 2), 2));
        assert!(!t.contains(&key(5_900, 2)));
        assert_eq!(t.len(), 3);
        assert!(t.take(&key(1_500, 1), 1));
        assert_eq!(
            t.oldest_index(),
            Some(3),
            "a recalled far timer holds nothing"
        );
        assert_eq!(t.next_due(), Some(5_000), "the first slot's start");
        // At 3,500 the horizon is 5,000: slot 5 is still far; at 4,000 it loads.
        assert!(!t.needs_advance(0) && t.needs_advance(3_000));
        t.advance(3_500);
        assert_eq!(t.in_memory(), 0);
        t.advance(4_000);
        assert_eq!((t.len(), t.in_memory()), (2, 1));
        assert_eq!(t.next_due(), Some(5_100));
        let keys = |v: Vec<(TimerKey, Pending)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(t.due(6_000, 10)), vec![key(5_100, 3)]);
        assert_eq!(t.oldest_index(), Some(3));
        t.check_invariants();
        // The slot's queue retires at the next checkpoint (in memory here: no files).
        assert_eq!(t.checkpoint().unwrap(), (vec![], vec![]));
    }

    /// A slot loads a batch per entry while it is more than half a slot away, then whole; a
    /// timer not read in yet is still found by a recall or a fire.
    #[test]
    fn a_slot_loads_a_batch_per_entry_and_whole_when_near() {
        let mut t = Timers::with_slot(1_000, 2);
        t.advance(0);
        let p = |identity| Pending { identity, len: 5 };
        for i in 1..=5 {
            t.schedule(key(5_000 + 10 * i, i), p(i), 0, None);
        }
        assert_eq!((t.len(), t.in_memory()), (5, 0));
        t.advance(4_000); // horizon 6,000: slot 5 loads, two records
        assert_eq!((t.len(), t.in_memory()), (5, 2));
        assert!(t.needs_advance(4_000), "still loading");
        t.check_invariants();
        // Record 4 is not read in yet: a recall finds it in the slot's file.
        assert!(t.contains(&key(5_040, 4)));
        assert!(t.take(&key(5_040, 4), 4));
        assert!(!t.contains(&key(5_040, 4)) && !t.take(&key(5_040, 4), 4));
        // A record read in is found in memory, not again in the file.
        assert!(t.take(&key(5_010, 1), 1));
        assert!(!t.take(&key(5_010, 1), 1));
        assert_eq!(t.len(), 3);
        t.advance(4_100);
        assert_eq!(t.in_memory(), 2, "records 2 and 3 (4 was recalled)");
        // Half a slot before it starts, the rest comes at once.
        t.advance(4_500);
        assert_eq!((t.len(), t.in_memory()), (3, 3));
        assert!(!t.needs_advance(4_500));
        let keys = |v: Vec<(TimerKey, Pending)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(t.due(6_000, 10)),
            vec![key(5_020, 2), key(5_030, 3), key(5_050, 5)]
        );
        t.check_invariants();
    }
}
