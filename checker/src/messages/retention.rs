//! Retention: acknowledged messages the broker deleted because they were old.
//!
//! The environment observes deletions where it can see them (the simulator taps every group's
//! log: which entry each message is in, and where each group's log starts) and records them as
//! [`Op::Expired`]. Its oracle checks that each deletion was of entries older than the
//! retention age (`premature-deletion`); this module only makes the deleted messages
//! `expired` rather than `lost`, and lets a FIFO consumer go past them. A message the
//! environment never saw stored stays `lost` if no one received it.

use super::Op;
use super::sends::Sends;

pub(super) fn index<'h>(history: &'h [Op], s: &mut Sends<'h>) {
    for op in history {
        if let Op::Expired { ids, .. } = op {
            for id in ids {
                if let Some(ok) = s.ok.get(id.as_str()) {
                    s.expired.insert(ok);
                }
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
        }
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
