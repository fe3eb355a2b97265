//! One receive (pop) as it is applied: its bounds, what it has taken so far, and the ways it
//! takes messages from a queue (expired deliveries again, then messages never handed out; for
//! an orderly group, all of them in offset order, message group by message group).
//! The choice of queues and their order, and the dead-letter topic, are [`BrokerState::pop`]'s.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::collections::BinaryHeap;

use super::BrokerState;
use super::DEFAULT_MAX_ATTEMPTS;
use super::Delivery;
use super::Outcome;
use super::Reject;
use super::consume_queue::ConsumeQueue;
use super::consume_queue::CqEntry;
use super::pop::Inflight;
use super::pop::PopQueue;
use crate::command::Pop;
use crate::command::PopOrder;
use crate::command::Receipt;
use crate::command::TagFilter;
use crate::limits;
use crate::model::QueueId;
use crate::model::QueueOffset;
use crate::model::TopicConfig;
use crate::model::TopicKind;
use crate::model::dlq_topic;

/// One receive being applied: its bounds, and what it has taken so far.
pub(super) struct PopRound<'a> {
    pub(super) p: &'a Pop,
    pub(super) now: u64,
    /// Messages in log entries below this were deleted by retention (a dead-letter queue may
    /// still point at one: it is skipped).
    pub(super) log_start: u64,
    /// At most this many deliveries.
    pub(super) max: usize,
    /// Deliveries are invisible until then.
    pub(super) deadline: u64,
    /// A message delivered this many times goes to the dead-letter topic instead.
    pub(super) max_attempts: u32,
    /// Body bytes the reply may still take.
    pub(super) budget: u64,
    pub(super) deliveries: Vec<Delivery>,
    pub(super) dead: Vec<CqEntry>,
}

/// Where a FIFO receive's next candidate comes from.
#[derive(Clone, Copy)]
enum Source {
    /// In flight, its invisibility over.
    Expired,
    /// Gone past earlier ([`PopQueue::skipped`]).
    Skipped,
    /// Never reached (`next`).
    New,
}

/// Which group hashes of one queue count ([`BrokerState::groups_from`],
/// [`BrokerState::grouped_from`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupRule {
    /// The marker's log index (0: not applied yet).
    pub(super) groups_from: u64,
    /// The queue's first offset whose hash counts.
    pub(super) queue_from: u64,
}

impl GroupRule {
    /// The message group of `e`, at offset `off`, as FIFO receives see it: its hash if every
    /// replica stored one (the message was stored at or after the marker, at or past the
    /// queue's first counted offset), else 0 (not known: ordered with everything).
    pub(super) fn of(self, off: u64, e: &CqEntry) -> u64 {
        if self.groups_from != 0 && e.log_index >= self.groups_from && off >= self.queue_from {
            e.group_hash
        } else {
            0
        }
    }

    /// `e` as a dead-letter queue keeps it: with the group that counts here, which stays
    /// true wherever the copy sits.
    pub(super) fn dead(self, off: u64, e: CqEntry) -> CqEntry {
        CqEntry {
            group_hash: self.of(off, &e),
            ..e
        }
    }
}

/// The message groups of an orderly group's queue that wait: each has a message in flight and
/// still invisible (being processed). `None` if the whole queue waits: a message in flight
/// whose group is not known (no group, or stored before the marker) orders with everything.
fn blocked_groups(
    cq: &ConsumeQueue,
    pq: &PopQueue,
    now: u64,
    rule: GroupRule,
) -> Option<BTreeSet<u64>> {
    let mut blocked = BTreeSet::new();
    for (off, inf) in &pq.inflight {
        if inf.deadline_ms > now {
            match cq.get(*off).map(|e| rule.of(*off, &e)) {
                Some(h) if h != 0 => {
                    blocked.insert(h);
                }
                _ => return None,
            }
        }
    }
    Some(blocked)
}

/// True if a FIFO receive at `now` would hand out something of this queue or move the
/// group's receive state on (filters aside): it is tried on a copy, looking at one new message
/// at most. A long poll waits instead of proposing receives that take nothing. (Before message
/// groups were told apart, a FIFO queue blocked by its head still looked available, and a
/// long poll proposed empty receives until the head was acknowledged; `fifo_model`'s
/// `no-spin` check holds this to the receive itself.)
pub(super) fn fifo_could_take(
    cq: &ConsumeQueue,
    pq: &PopQueue,
    now: u64,
    log_start: u64,
    rule: GroupRule,
) -> bool {
    let probe = Pop {
        group: String::new(),
        topic: String::new(),
        queue: None,
        max: 1,
        invisible_ms: 0,
        filter: TagFilter::All,
        max_bytes: u64::MAX,
        order: PopOrder::default(),
        sql: None,
        verdicts: None,
    };
    let mut round = PopRound {
        p: &probe,
        now,
        log_start,
        max: 1,
        deadline: now,
        // A message out of attempts is dead-lettered by the real receive: progress too.
        max_attempts: u32::MAX,
        budget: u64::MAX,
        deliveries: Vec::new(),
        dead: Vec::new(),
    };
    let mut trial = pq.clone();
    round.take_fifo(0, cq, &mut trial, &mut 0, 1, rule);
    !round.deliveries.is_empty() || trial != *pq
}

impl PopRound<'_> {
    /// Hands out `entry` at offset `off` of queue `q` as delivery `attempt`.
    fn hand_out(
        &mut self,
        q: u32,
        off: u64,
        entry: CqEntry,
        attempt: u32,
        pq: &mut PopQueue,
        receipt_seq: &mut u64,
    ) {
        *receipt_seq += 1;
        let inf = Inflight {
            deadline_ms: self.deadline,
            attempt,
            seq: *receipt_seq,
        };
        pq.inflight.insert(off, inf);
        self.deliveries.push(Delivery {
            topic: self.p.topic.clone(),
            receipt: Receipt {
                queue: QueueId(q),
                offset: QueueOffset(off),
                seq: inf.seq,
            },
            entry,
            attempt,
            deadline_ms: inf.deadline_ms,
        });
    }

    /// The reply must fit in a message: stop once the bodies reach the budget (at least one
    /// message always goes, or a message larger than the budget would never be delivered).
    fn full(&mut self, len: u32) -> bool {
        if !self.deliveries.is_empty() && u64::from(len) > self.budget {
            return true;
        }
        self.budget = self.budget.saturating_sub(u64::from(len));
        false
    }

    /// Hands out again the deliveries of queue `q` whose invisibility expired, in offset
    /// order; those out of attempts are set aside for the dead-letter topic instead.
    pub(super) fn redeliver_expired(
        &mut self,
        q: u32,
        cq: &ConsumeQueue,
        pq: &mut PopQueue,
        receipt_seq: &mut u64,
        rule: GroupRule,
    ) {
        for off in pq.expired(self.now) {
            if self.deliveries.len() >= self.max {
                break;
            }
            let (Some(entry), Some(inf)) = (cq.get(off), pq.inflight.get(&off).copied()) else {
                continue; // unreachable while the invariants hold
            };
            if entry.log_index < self.log_start {
                pq.inflight.remove(&off); // deleted by retention
                continue;
            }
            if inf.attempt < self.max_attempts && self.full(entry.len) {
                break;
            }
            if inf.attempt >= self.max_attempts {
                pq.inflight.remove(&off);
                self.dead.push(rule.dead(off, entry));
                continue;
            }
            self.hand_out(q, off, entry, inf.attempt + 1, pq, receipt_seq);
        }
    }

    /// Hands out messages of queue `q` never handed out to this group. The scan is bounded: a
    /// filter that matches nothing in a long backlog stops after MAX_POP_SCAN entries of the
    /// queue per receive (the next receive goes on from there) instead of holding the apply
    /// lock for all of it. `scan` is what is left of the queue's allowance; a receive that
    /// comes back to the queue passes what it left.
    pub(super) fn take_new(
        &mut self,
        q: u32,
        cq: &ConsumeQueue,
        pq: &mut PopQueue,
        receipt_seq: &mut u64,
        scan: &mut u64,
    ) {
        // Retention deleted what a group that never read this queue (or fell behind) had not
        // taken: it goes on from the first retained message, as RocketMQ does.
        pq.next = pq.next.max(cq.start());
        while self.deliveries.len() < self.max && pq.next < cq.end() && *scan > 0 {
            let off = pq.next;
            let Some(entry) = cq.get(off) else {
                break; // unreachable: below end
            };
            let wanted = if entry.log_index < self.log_start {
                false // deleted
            } else {
                match self.p.wants_new(q, off, entry.tag_hash) {
                    Some(w) => w,
                    None => break, // a SQL92 receive judged no further
                }
            };
            *scan -= 1;
            if !wanted {
                pq.next += 1;
                continue; // filtered out (or deleted): consumed for this group
            }
            if self.full(entry.len) {
                break;
            }
            pq.next += 1;
            self.hand_out(q, off, entry, 1, pq, receipt_seq);
        }
    }

    /// Hands out the messages of queue `q` a FIFO receive went past ([`PopQueue::skipped`]),
    /// in offset order, to a group that is not orderly any more (its configuration changed):
    /// they would otherwise never be delivered, and the group's acknowledged offset would stay
    /// below them. (Review of issue 14.)
    pub(super) fn take_skipped(
        &mut self,
        q: u32,
        cq: &ConsumeQueue,
        pq: &mut PopQueue,
        receipt_seq: &mut u64,
    ) {
        while self.deliveries.len() < self.max {
            let Some(off) = pq.skipped.first().copied() else {
                break;
            };
            let Some(entry) = cq.get(off) else {
                pq.skipped.remove(&off); // below the queue's start: deleted
                continue;
            };
            if entry.log_index < self.log_start || !self.p.wants_skipped(entry.tag_hash) {
                pq.skipped.remove(&off); // deleted, or filtered out: consumed for this group
                continue;
            }
            if self.full(entry.len) {
                break;
            }
            pq.skipped.remove(&off);
            self.hand_out(q, off, entry, 1, pq, receipt_seq);
        }
    }

    /// Hands out queue `q` to an orderly (FIFO) group: expired deliveries, messages gone past
    /// and new ones, merged in offset order, each only if no earlier message of its message
    /// group is in flight and invisible. A message of a waiting group is gone past (recorded
    /// in [`PopQueue::skipped`]) so other groups sharing the queue go on; RocketMQ instead
    /// holds the whole queue while any message of it is being processed. A message whose
    /// group is not known waits for everything before it, and nothing passes it.
    pub(super) fn take_fifo(
        &mut self,
        q: u32,
        cq: &ConsumeQueue,
        pq: &mut PopQueue,
        receipt_seq: &mut u64,
        mut scan: u64,
        rule: GroupRule,
    ) {
        pq.next = pq.next.max(cq.start());
        pq.skipped = pq.skipped.split_off(&cq.start());
        let Some(blocked) = blocked_groups(cq, pq, self.now, rule) else {
            return;
        };
        // Something earlier than the candidate is left in this queue (in flight or gone past).
        let mut behind = !blocked.is_empty();
        let expired = pq.expired(self.now);
        let skipped: Vec<u64> = pq.skipped.iter().copied().collect();
        let (mut ei, mut si) = (0, 0);
        while self.deliveries.len() < self.max {
            let e = expired.get(ei).copied();
            let s = skipped.get(si).copied();
            // A SQL92 receive goes no further than the leader judged.
            let n =
                (pq.next < cq.end() && scan > 0 && self.p.reaches(q, pq.next)).then_some(pq.next);
            let Some(off) = [e, s, n].into_iter().flatten().min() else {
                break;
            };
            let source = if e == Some(off) {
                ei += 1;
                Source::Expired
            } else if s == Some(off) {
                si += 1;
                Source::Skipped
            } else {
                scan -= 1;
                Source::New
            };
            let Some(entry) = cq.get(off) else {
                break; // unreachable: every candidate is below the end
            };
            let gone = entry.log_index < self.log_start;
            let unwanted = gone
                || match source {
                    Source::New => self.p.wants_new(q, off, entry.tag_hash) != Some(true),
                    _ => !self.p.wants_skipped(entry.tag_hash),
                };
            match source {
                Source::Expired if gone => {
                    pq.inflight.remove(&off);
                    continue;
                }
                Source::Skipped if unwanted => {
                    pq.skipped.remove(&off);
                    continue;
                }
                Source::New if unwanted => {
                    pq.next += 1; // consumed for this group, as `take_new` does
                    continue;
                }
                _ => {}
            }
            let h = rule.of(off, &entry);
            let waits = if h == 0 { behind } else { blocked.contains(&h) };
            if waits {
                if h == 0 {
                    break;
                }
                behind = true;
                if let Source::New = source {
                    if pq.skipped.len() >= limits::MAX_FIFO_SKIPPED {
                        break; // nothing more is remembered: the queue waits as a whole
                    }
                    pq.skipped.insert(off);
                    pq.next += 1;
                }
                continue;
            }
            let attempt = match source {
                Source::Expired => {
                    let inf = pq.inflight[&off];
                    if inf.attempt >= self.max_attempts {
                        pq.inflight.remove(&off);
                        self.dead.push(rule.dead(off, entry));
                        continue;
                    }
                    inf.attempt + 1
                }
                Source::Skipped | Source::New => 1,
            };
            if self.full(entry.len) {
                break;
            }
            match source {
                Source::Skipped => {
                    pq.skipped.remove(&off);
                }
                Source::New => pq.next += 1,
                Source::Expired => {}
            }
            self.hand_out(q, off, entry, attempt, pq, receipt_seq);
        }
    }
}

/// Where a queue's next new message stands in a receive from any queue: the smallest goes
/// first. Oldest (lowest log index) first; in a `priority` topic the highest queue (priority)
/// first, oldest first within it, except that a message stored at least
/// [`limits::PRIORITY_AGING_MS`] before the receive goes ahead of every younger one, oldest
/// first: the bound on starvation (issue 16, docs/architecture.md). Ties (messages of one
/// log entry) go by queue.
fn rank(priority: bool, now: u64, q: u32, e: &CqEntry) -> (bool, u64, u64) {
    if !priority || now.saturating_sub(e.store_ms) >= limits::PRIORITY_AGING_MS {
        (false, e.log_index, 0)
    } else {
        (true, u64::from(u32::MAX - q), e.log_index)
    }
}

/// Applying a receive.
impl BrokerState {
    /// [`crate::command::Command::Pop`]: hands out visible messages of the group's topic.
    pub(super) fn pop(&mut self, now: u64, p: &Pop) -> Outcome {
        let queues = match self.pop_queues(p) {
            Ok(q) => q,
            Err(r) => return Outcome::Rejected(r),
        };
        let max_attempts = self
            .groups
            .get(&p.group)
            .map_or(DEFAULT_MAX_ATTEMPTS, |g| g.max_delivery_attempts);
        // An orderly (FIFO) group reads each message group strictly in order: while a message
        // it took is still invisible (being processed), nothing newer of its message group is
        // handed out; expired ones come back first, before anything newer (`take_fifo`).
        let fifo = self.groups.get(&p.group).is_some_and(|g| g.fifo);
        let mut round = PopRound {
            p,
            now,
            log_start: self.log_start,
            max: p.max as usize,
            deadline: now.saturating_add(p.invisible_ms),
            max_attempts,
            budget: p.max_bytes,
            deliveries: Vec::new(),
            dead: Vec::new(),
        };
        let empty = ConsumeQueue::default();
        // From any queue, new messages go oldest first across the queues (after every due
        // retry), or in a priority topic highest priority first (`rank`); otherwise queue by
        // queue.
        let ranked = self.is_priority(&p.topic);
        let merge = p.queue.is_none() && (p.order == PopOrder::OldestFirst || ranked);
        let mut open = Vec::new();
        for q in queues {
            if round.deliveries.len() >= round.max {
                break;
            }
            let rule = self.group_rule(&p.topic, q);
            let cq = self.queues.get(&(p.topic.clone(), q)).unwrap_or(&empty);
            let pq = self
                .pops
                .entry((p.group.clone(), p.topic.clone(), q))
                .or_default();
            if fifo && rule.groups_from != 0 {
                round.take_fifo(q, cq, pq, &mut self.receipt_seq, limits::MAX_POP_SCAN, rule);
                continue;
            }
            // Before the FIFO-groups marker an orderly group reads as older builds did, which
            // may be applying the same entry: nothing of a queue while a message it took from
            // it is invisible. (Review of issue 14: `take_fifo` before the marker took a
            // receive from any queue queue by queue, where older builds merge oldest first.)
            if fifo && pq.inflight.values().any(|i| i.deadline_ms > now) {
                continue;
            }
            // Expired deliveries first, oldest offset first: a retry is due.
            round.redeliver_expired(q, cq, pq, &mut self.receipt_seq, rule);
            // Then what a FIFO receive went past, if the group is not orderly any more.
            round.take_skipped(q, cq, pq, &mut self.receipt_seq);
            // Then messages never handed out to this group.
            if merge {
                open.push(q);
            } else {
                let mut scan = limits::MAX_POP_SCAN;
                round.take_new(q, cq, pq, &mut self.receipt_seq, &mut scan);
            }
        }
        if merge {
            self.take_ranked(&mut round, open, ranked);
        }
        let PopRound {
            deliveries, dead, ..
        } = round;
        let dead_lettered = dead.len() as u32;
        self.dead_letter(&p.group, now, dead);
        Outcome::Popped {
            deliveries,
            dead_lettered,
        }
    }

    /// Hands out the messages of `queues` never handed out to the round's group in [`rank`]
    /// order (oldest first, unless `priority`): one at a time from the queue whose next
    /// message ranks first, so no queue waits behind another's backlog.
    fn take_ranked(&mut self, round: &mut PopRound<'_>, queues: Vec<u32>, priority: bool) {
        let p = round.p;
        let (group, topic, now) = (&p.group, &p.topic, round.now);
        let empty = ConsumeQueue::default();
        let next_rank = |cq: &ConsumeQueue, pq: &PopQueue, q: u32| {
            let off = pq.next.max(cq.start());
            (off < cq.end()).then(|| cq.get(off).map(|e| rank(priority, now, q, &e)))?
        };
        let mut heads = BinaryHeap::new();
        for q in queues {
            let cq = self.queues.get(&(topic.clone(), q)).unwrap_or(&empty);
            if let Some(pq) = self.pops.get_mut(&(group.clone(), topic.clone(), q)) {
                // As `take_new` does: past what retention deleted, even with nothing to take.
                pq.next = pq.next.max(cq.start());
                if let Some(r) = next_rank(cq, pq, q) {
                    heads.push(Reverse((r, q, limits::MAX_POP_SCAN)));
                }
            }
        }
        let max = round.max;
        while round.deliveries.len() < max {
            // Each queue keeps one scan allowance for the whole receive, as queue by queue.
            let Some(Reverse((_, q, mut scan))) = heads.pop() else {
                break;
            };
            let cq = self.queues.get(&(topic.clone(), q)).unwrap_or(&empty);
            let Some(pq) = self.pops.get_mut(&(group.clone(), topic.clone(), q)) else {
                continue;
            };
            let before = round.deliveries.len();
            round.max = before + 1;
            round.take_new(q, cq, pq, &mut self.receipt_seq, &mut scan);
            round.max = max;
            // A queue that gave nothing (filtered to its end, scan bound, or byte budget) is
            // done for this round.
            if round.deliveries.len() > before
                && let Some(r) = next_rank(cq, pq, q)
            {
                heads.push(Reverse((r, q, scan)));
            }
        }
    }

    /// True if `topic` is a priority topic.
    fn is_priority(&self, topic: &str) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.kind == TopicKind::Priority)
    }

    /// The messages a receive would reach for the first time, up to `cap`, in the order it
    /// reaches them (oldest first across its queues), each with its queue and offset: what
    /// the leader judges for a SQL92 receive ([`crate::filter::judge`]). Each queue's are
    /// consecutive offsets from its receive position, as [`crate::command::Run`] needs.
    ///
    /// `now` stands for the receive's time, which the leader can only guess (its clock): in a
    /// priority topic it decides which messages have waited long enough to go by age, so a
    /// wrong guess changes which messages are judged, not what a receive may take.
    pub fn reach_new(&self, p: &Pop, cap: u64, now: u64) -> Vec<(u32, u64, CqEntry)> {
        let Ok(queues) = self.pop_queues(p) else {
            return Vec::new();
        };
        let priority = self.is_priority(&p.topic) && p.queue.is_none();
        let mut heads = BinaryHeap::new();
        for q in queues {
            let Some(cq) = self.queues.get(&(p.topic.clone(), q)) else {
                continue;
            };
            let next = self
                .pops
                .get(&(p.group.clone(), p.topic.clone(), q))
                .map_or(0, |pq| pq.next)
                .max(cq.start());
            if let Some(e) = (next < cq.end()).then(|| cq.get(next)).flatten() {
                heads.push(Reverse((rank(priority, now, q, &e), q, next)));
            }
        }
        let mut out = Vec::new();
        while (out.len() as u64) < cap {
            let Some(Reverse((_, q, off))) = heads.pop() else {
                break;
            };
            let cq = &self.queues[&(p.topic.clone(), q)];
            let Some(e) = cq.get(off) else {
                break; // unreachable: below the queue's end
            };
            out.push((q, off, e));
            if let Some(n) = (off + 1 < cq.end()).then(|| cq.get(off + 1)).flatten() {
                heads.push(Reverse((rank(priority, now, q, &n), q, off + 1)));
            }
        }
        out
    }

    /// The queues a receive reads, in order, or why it is refused.
    fn pop_queues(&self, p: &Pop) -> Result<Vec<u32>, Reject> {
        let Some(topic) = self.topics.get(&p.topic) else {
            return Err(Reject::TopicNotFound);
        };
        let queue_count = topic.queues;
        if queue_count == 0 {
            return Err(Reject::QueueNotFound);
        }
        Ok(match p.queue {
            Some(q) if q.0 < queue_count => vec![q.0],
            Some(_) => return Err(Reject::QueueNotFound),
            // A priority topic: the highest priority (queue) first, every time.
            None if topic.kind == TopicKind::Priority => (0..queue_count).rev().collect(),
            // Any queue: start somewhere different each time so no queue starves.
            None => {
                let start = (self.receipt_seq % queue_count as u64) as u32;
                (0..queue_count)
                    .map(|i| (start + i) % queue_count)
                    .collect()
            }
        })
    }

    /// Appends messages that ran out of delivery attempts to `group`'s dead-letter topic
    /// (created on first use).
    pub(super) fn dead_letter(&mut self, group: &str, now: u64, dead: Vec<CqEntry>) {
        if dead.is_empty() {
            return;
        }
        let dlq = dlq_topic(group);
        self.upsert_topic(TopicConfig {
            name: dlq.clone(),
            queues: 1,
            kind: TopicKind::Mixed,
        });
        let files = self.files.0.as_ref();
        let cq = self
            .queues
            .entry((dlq, 0))
            .or_insert_with_key(|(t, q)| ConsumeQueue::new(files, t, *q));
        for e in dead {
            // The dead letter points at the original message: no copy of the body.
            cq.push(CqEntry { store_ms: now, ..e });
        }
    }
}
