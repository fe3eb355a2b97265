//! A SQL92 receive's verdicts, judged on the group's leader before it proposes the receive
//! (issue 16).
//!
//! Why here and not in apply: applying must not read the log (every replica would read the
//! same messages again, and apply holds the state). Why not at send time (a bit per
//! subscription beside the consume-queue entry, as RocketMQ's bitmap filter): a message
//! stored before the subscription existed has no bit, and would need this path anyway.
//! So the leader reads the messages the receive would reach for the first time (oldest
//! first, [`BrokerState::reach_new`](crate::state::BrokerState::reach_new)), evaluates the
//! expression on each, and stops once enough match to fill the receive (or after
//! [`MAX_SQL_JUDGED`]); the receive carries the verdicts in the log, one bit per message.
//! Applying it moves the group past every message it judged and did not want, so each
//! message is read once per group (more only when receives race), not once per poll.

use crate::command::Pop;
use crate::command::Run;
use crate::command::Verdicts;
use crate::error::Result;
use crate::filter::MessageProperties;
use crate::filter::sql92::Sql92;
use crate::limits::MAX_SQL_JUDGED;
use crate::model::QueueId;
use crate::replica::Replica;

/// Judges, for `p` on `replica` (its group's leader), the messages it would reach first.
pub fn judge(replica: &Replica, p: &Pop, sql: &Sql92) -> Result<Verdicts> {
    // The receive's time is not known yet: the newest applied entry's stands for it.
    let (reach, log_start) =
        replica.read(|s| (s.reach_new(p, MAX_SQL_JUDGED, s.clock_ms), s.log_start));
    let mut v = Verdicts::default();
    let (mut matched, mut bytes) = (0u32, 0u64);
    for (q, off, e) in reach {
        // Enough to fill the receive: the rest is judged by the next one.
        if matched >= p.max || bytes >= p.max_bytes {
            break;
        }
        // A message retention deleted is skipped by the receive whatever the verdict.
        let wanted = e.log_index >= log_start
            && match replica.with_head(&e, |h| sql.matches(&MessageProperties::of_head(h))) {
                Ok(w) => w,
                Err(_) if replica.read(|s| e.log_index < s.log_start) => false,
                Err(err) => return Err(err),
            };
        v.queues
            .entry(QueueId(q))
            .or_insert_with(|| Run::new(off))
            .push(wanted);
        if wanted {
            matched += 1;
            bytes += u64::from(e.len);
        }
    }
    Ok(v)
}
