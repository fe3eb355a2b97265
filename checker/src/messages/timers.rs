//! Scheduled messages: `early-delivery`, `recalled-delivered` and `timer-duplicate`
//! (`timer-lost` is [`super::lost`]'s, which knows what was delivered at all).
//!
//! - `early-delivery`: a receive or pull handed out a scheduled message and completed before
//!   the message's `not_before` ([`Op::Scheduled`]): the broker delivered it before its time.
//! - `recalled-delivered`: a message whose recall was answered OK was delivered, at any time (a
//!   recall succeeds only while the message is pending, and then it is never delivered).
//! - `timer-duplicate`: two receives by the main group both handed out a scheduled message as
//!   its first delivery (attempt 1): it was delivered from two copies (a timer fired twice).

use super::Anomaly;
use super::Op;
use super::Stats;
use super::anomaly;
use super::resets::FirstDeliveries;
use super::resets::Resets;
use super::sends::Sends;

pub(super) fn check<'h>(
    history: &'h [Op],
    s: &Sends<'h>,
    resets: &Resets,
    out: &mut Vec<Anomaly>,
    st: &mut Stats,
) {
    st.scheduled = s.scheduled.len();
    st.recalled = s.recalled.len();
    if s.scheduled.is_empty() {
        return;
    }
    let mut first = FirstDeliveries::default();
    let early = |id: &str, completed: u64, what: &str, out: &mut Vec<Anomaly>| {
        if let Some(nb) = s.scheduled.get(id)
            && completed < *nb
        {
            out.push(anomaly(
                "early-delivery",
                format!(
                    "{id} was {what} at {completed} µs, {} µs before its delivery time",
                    nb - completed
                ),
            ));
        }
    };
    for op in history {
        match op {
            Op::Receive {
                fifo,
                invoked,
                completed,
                msgs,
                ..
            } => {
                for m in msgs {
                    early(&m.id, *completed, "received", out);
                    if s.recalled.contains(m.id.as_str()) {
                        out.push(anomaly(
                            "recalled-delivered",
                            format!("{} was received although its recall succeeded", m.id),
                        ));
                    }
                    if !*fifo
                        && m.attempt == 1
                        && s.scheduled.contains_key(m.id.as_str())
                        && !s.repeats.contains(m.id.as_str())
                        && first.copy(&m.id, *invoked, *completed, resets)
                    {
                        out.push(anomaly(
                            "timer-duplicate",
                            format!("{} was handed out as a first delivery twice", m.id),
                        ));
                    }
                }
            }
            Op::Pull {
                completed, msgs, ..
            } => {
                for (_, id, _) in msgs {
                    early(id, *completed, "pulled", out);
                    if s.recalled.contains(id.as_str()) {
                        out.push(anomaly(
                            "recalled-delivered",
                            format!("{id} was pulled although its recall succeeded"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Op;
    use super::super::Result3;
    use super::super::testing::*;

    fn scheduled(id: &str, not_before: u64) -> Op {
        Op::Scheduled {
            id: id.into(),
            invoked: 0,
            not_before,
        }
    }

    fn recall(id: &str, t: u64, result: Result3) -> Op {
        Op::Recall {
            id: id.into(),
            invoked: t,
            completed: t + 1,
            result,
        }
    }

    #[test]
    fn a_timer_delivered_on_time_once_is_clean() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            scheduled("a", 100),
            recv(0, false, 100, &[("a", 0)]),
            ack("a", 102),
        ];
        assert!(kinds(&h).is_empty(), "{:?}", kinds(&h));
    }

    #[test]
    fn early_twice_and_recalled_deliveries_are_caught() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            scheduled("a", 500),
            recv(0, false, 100, &[("a", 0)]),
            recv(1, false, 600, &[("a", 1)]),
            send("b", None, 0, Result3::Ok, None),
            scheduled("b", 500),
            recall("b", 10, Result3::Ok),
            recv(0, false, 700, &[("b", 2)]),
        ];
        let k = kinds(&h);
        for want in ["early-delivery", "timer-duplicate", "recalled-delivered"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn recalled_timers_are_not_lost_and_unrecalled_ones_are_timer_lost() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            scheduled("a", 100),
            recall("a", 5, Result3::Ok),
            send("b", None, 0, Result3::Ok, None),
            scheduled("b", 100),
            recall("b", 5, Result3::Info),
            send("c", None, 0, Result3::Ok, None),
            scheduled("c", 100),
            recall("c", 5, Result3::Fail),
        ];
        assert_eq!(kinds(&h), vec!["timer-lost"]);
    }
}
