//! Retention: acknowledged messages the broker deleted because they were old.
//!
//! The environment observes deletions where it can see them and records them as
//! [`Op::Expired`]: the simulator taps every group's log (which entry each message is in, and
//! where each group's log starts); the real-process suite reads where each queue starts and
//! compares the send receipts' positions. This module makes the deleted messages `expired`
//! rather than `lost`, and lets a FIFO consumer go past them. A message the environment never
//! saw stored stays `lost` if no one received it.
//!
//! `premature-deletion`, when the observation names the retention age: a message is stored no
//! earlier than its send was invoked and deleted no later than the observation completed, so
//! a deletion of a message sent less than the age before that is too early. (The check is
//! necessary, not sufficient; the simulator's log tap also compares each deleted entry's own
//! store time with the moment it was deleted.)

use super::Anomaly;
use super::Op;
use super::anomaly;
use super::sends::Sends;

/// How far the brokers' store clock may run ahead of the history's clock (both read on one
/// machine; different clocks and the brokers' slew bound).
const CLOCK_SLACK_US: u64 = 250_000;

pub(super) fn index<'h>(history: &'h [Op], s: &mut Sends<'h>) {
    for op in history {
        if let Op::Expired { ids, .. } = op {
            for id in ids {
                if let Some(ok) = s.ok.get(id.as_str()) {
                    s.expired.insert(ok);
                } else if let Some(c) = s.committed.get(id.as_str()) {
                    // A transaction committed OK whose half message's send ended unknown.
                    s.expired.insert(c);
                }
            }
        }
    }
}

pub(super) fn check(history: &[Op], s: &Sends<'_>, out: &mut Vec<Anomaly>) {
    for op in history {
        let Op::Expired {
            ids,
            completed,
            age_us: Some(age),
            ..
        } = op
        else {
            continue;
        };
        for id in ids {
            let Some((_, invoked)) = s.attempted.get(id.as_str()) else {
                continue;
            };
            let at_least = invoked + age;
            if at_least > completed + CLOCK_SLACK_US {
                out.push(anomaly(
                    "premature-deletion",
                    format!(
                        "{id} (sent at {invoked} µs) was deleted by {completed} µs: under the \
                         retention age of {} ms",
                        age / 1000
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Op;
    use super::super::Result3;
    use super::super::check;
    use super::super::testing::*;

    fn expired(ids: &[&str], at: u64) -> Op {
        Op::Expired {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            invoked: at,
            completed: at,
            age_us: None,
        }
    }

    #[test]
    fn a_deletion_within_the_age_is_premature() {
        let aged = |ids: &[&str], at: u64| match expired(ids, at) {
            Op::Expired {
                ids,
                invoked,
                completed,
                ..
            } => Op::Expired {
                ids,
                invoked,
                completed,
                age_us: Some(5_000_000),
            },
            _ => unreachable!(),
        };
        let mut h = vec![
            send("old", None, 0, Result3::Ok, None),
            send("young", None, 4_000_000, Result3::Ok, None),
            recv(0, false, 4_100_000, &[("young", 0)]),
            aged(&["old"], 5_100_000),
        ];
        let (a, st) = check(&h);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(st.expired, 1);
        // 4 s after "young" was sent, 1 s short of the age (beyond the clock slack).
        h.push(aged(&["young"], 8_000_000));
        assert_eq!(kinds(&h), vec!["premature-deletion"]);
        // Without the age, the observer makes no claim.
        h.pop();
        h.push(expired(&["young"], 8_000_000));
        assert!(check(&h).0.is_empty());
    }

    #[test]
    fn deleted_messages_are_expired_not_lost() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            send("b", None, 10, Result3::Ok, None),
            send("c", None, 2_000, Result3::Ok, None),
            recv(0, false, 2_100, &[("c", 2)]),
            expired(&["a", "b", "x"], 5_000),
        ];
        let (a, st) = check(&h);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(st.expired, 2);
        // Without the observation, the undelivered messages are lost.
        assert_eq!(kinds(&h[..4]), vec!["lost", "lost"]);
    }

    #[test]
    fn a_fifo_consumer_may_go_past_expired_messages() {
        let g = Some("g");
        let h = vec![
            send("f0", g, 0, Result3::Ok, None),
            send("f1", g, 10, Result3::Ok, None),
            recv(0, true, 5_000, &[("f1", 1)]),
            expired(&["f0"], 5_000),
        ];
        let (a, _) = check(&h);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(kinds(&h[..3]), vec!["poll-skip", "lost"]);
    }
}
