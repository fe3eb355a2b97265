//! Applying an operator's reset of a consumer group's position (issue 16, item 4): the one
//! way a group's position may move backwards. It moves both consumer models at once, the
//! receive (pop) position and the committed offset of pull consumers, so a group consumed
//! either way is rewound (or skipped ahead) alike.

use super::BrokerState;
use super::Outcome;
use super::Reject;
use super::ResetQueue;
use crate::command::Reset;
use crate::command::ResetTo;
use crate::model::QueueId;
use crate::model::QueueOffset;
use crate::state::consume_queue::ConsumeQueue;

impl BrokerState {
    /// [`crate::command::Command::Reset`]: each named queue's receive position and committed
    /// offset go to the target (clamped to the retained messages), and the group forgets its
    /// deliveries in flight there (their receipts are refused from now on) and the messages a
    /// FIFO receive went past (they come again if at or after the new position).
    pub(super) fn reset(&mut self, r: &Reset) -> Outcome {
        let Some(topic) = self.topics.get(&r.topic) else {
            return Outcome::Rejected(Reject::TopicNotFound);
        };
        let queues: Vec<u32> = match r.queue {
            Some(q) if q.0 < topic.queues => vec![q.0],
            Some(_) => return Outcome::Rejected(Reject::QueueNotFound),
            None => (0..topic.queues).collect(),
        };
        let empty = ConsumeQueue::default();
        let mut moved = Vec::with_capacity(queues.len());
        for q in queues {
            let cq = self.queues.get(&(r.topic.clone(), q)).unwrap_or(&empty);
            let to = match r.to {
                ResetTo::Earliest => cq.start(),
                ResetTo::Latest => cq.end(),
                ResetTo::Offset(o) => o.0,
                ResetTo::Time(ms) => cq.offset_at_time(ms),
            }
            .clamp(cq.start(), cq.end());
            let pq = self
                .pops
                .entry((r.group.clone(), r.topic.clone(), q))
                .or_default();
            moved.push(ResetQueue {
                queue: QueueId(q),
                from: QueueOffset(pq.next),
                to: QueueOffset(to),
                dropped: pq.inflight.len() as u32,
            });
            pq.next = to;
            pq.inflight.clear();
            pq.skipped.clear();
            self.offsets.commit(&r.group, &r.topic, q, to, true);
        }
        Outcome::Reset(moved)
    }
}
