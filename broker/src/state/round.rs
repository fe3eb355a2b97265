//! One receive (pop) as it is applied: its bounds, what it has taken so far, and the two ways
//! it takes messages from a queue (expired deliveries again, then messages never handed out).
//! The choice of queues and their order is the state's (`super::BrokerState::pop`).

use super::Delivery;
use super::consume_queue::ConsumeQueue;
use super::consume_queue::CqEntry;
use super::pop::Inflight;
use super::pop::PopQueue;
use crate::command::Pop;
use crate::command::Receipt;
use crate::model::QueueId;
use crate::model::QueueOffset;

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

impl PopRound<'_> {
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
                self.dead.push(entry);
                continue;
            }
            *receipt_seq += 1;
            let next = Inflight {
                deadline_ms: self.deadline,
                attempt: inf.attempt + 1,
                seq: *receipt_seq,
            };
            pq.inflight.insert(off, next);
            self.deliveries.push(Delivery {
                topic: self.p.topic.clone(),
                receipt: Receipt {
                    queue: QueueId(q),
                    offset: QueueOffset(off),
                    seq: next.seq,
                },
                entry,
                attempt: next.attempt,
                deadline_ms: next.deadline_ms,
            });
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
            *scan -= 1;
            if !self.p.filter.matches(entry.tag_hash) || entry.log_index < self.log_start {
                pq.next += 1;
                continue; // filtered out (or deleted): consumed for this group
            }
            if self.full(entry.len) {
                break;
            }
            pq.next += 1;
            *receipt_seq += 1;
            let inf = Inflight {
                deadline_ms: self.deadline,
                attempt: 1,
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
                attempt: 1,
                deadline_ms: inf.deadline_ms,
            });
        }
    }
}
