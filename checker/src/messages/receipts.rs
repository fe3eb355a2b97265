//! `acked-redelivered` and `concurrent-ownership`: a message acknowledged OK is never handed
//! out again by a receive that began after the ack, and a message is held by one consumer at a
//! time — two deliveries whose invisibility windows must both have been open are a violation
//! (a window is the requested duration less [`RECEIPT_CLOCK_SLACK_PPM`]). For a send that may
//! repeat, a delivery after the ack is a counted `retry-duplicate` and copies may overlap.

use std::collections::BTreeMap;

use super::Anomaly;
use super::Op;
use super::RECEIPT_CLOCK_SLACK_PPM;
use super::Result3;
use super::Stats;
use super::anomaly;
use super::resets::Resets;
use super::sends::Sends;

/// The broker promises an invisible duration up to the cluster clock's slew short
/// (docs/guarantees.md); the simulator's monotonic clocks may also drift.
fn at_least(v: u64) -> u64 {
    v - v * RECEIPT_CLOCK_SLACK_PPM / 1_000_000
}

pub(super) fn check<'h>(
    history: &'h [Op],
    s: &Sends<'h>,
    resets: &Resets,
    out: &mut Vec<Anomaly>,
    st: &mut Stats,
) {
    // Per message id: its OK acks, (invoked, completed).
    let mut acks: BTreeMap<&'h str, Vec<(u64, u64)>> = BTreeMap::new();
    for op in history {
        if let Op::Ack {
            id,
            invoked,
            completed,
            result: Result3::Ok,
            ..
        } = op
        {
            acks.entry(id).or_default().push((*invoked, *completed));
        }
    }
    // Per message id: (invoked, completed, invisible, FIFO group) of each delivery.
    let mut windows: BTreeMap<&'h str, Vec<(u64, u64, u64, bool)>> = BTreeMap::new();
    for op in history {
        let Op::Receive {
            fifo,
            invoked,
            completed,
            invisible_us,
            msgs,
            ..
        } = op
        else {
            continue;
        };
        for d in msgs {
            let id = d.id.as_str();
            // The last ack begun (and ended) before this receive: a reset after it, before
            // the delivery, explains one more delivery.
            let before = acks
                .get(id)
                .and_then(|v| v.iter().filter(|(_, c)| c < invoked).max());
            if let Some(&(ack_invoked, acked)) = before {
                if s.repeats.contains(id) {
                    st.retry_duplicates += 1;
                } else if !resets.between(*fifo, ack_invoked, *completed) {
                    out.push(anomaly(
                        "acked-redelivered",
                        format!("{id} acked at {acked}, handed out again by a receive invoked at {invoked}"),
                    ));
                }
            }
            windows
                .entry(id)
                .or_default()
                .push((*invoked, *completed, *invisible_us, *fifo));
        }
    }
    // Both windows contain the other's delivery, and no reset came between (it forgets what
    // is in flight).
    for (id, ws) in &windows {
        if s.repeats.contains(id) || s.first_ack.contains_key(id) {
            continue;
        }
        for (a, &(i1, c1, v1, fifo)) in ws.iter().enumerate() {
            for &(i2, c2, v2, _) in &ws[a + 1..] {
                if c2 < i1 + at_least(v1)
                    && c1 < i2 + at_least(v2)
                    && !resets.between(fifo, i1.min(i2), c1.max(c2))
                {
                    out.push(anomaly(
                        "concurrent-ownership",
                        format!(
                            "{id} delivered at [{i1},{c1}] and [{i2},{c2}] within invisibility"
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::Result3;

    #[test]
    fn a_message_comes_back_only_after_its_window_and_never_after_an_ack() {
        let good = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            recv(0, false, 10, &[("a", 0), ("b", 1)]),
            ack("a", 12),
            // b comes back once its 100 µs window has passed.
            recv(1, false, 200, &[("b", 1)]),
        ];
        assert!(kinds(&good).is_empty(), "{:?}", kinds(&good));
        let bad = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            recv(0, false, 10, &[("a", 0), ("b", 1)]),
            ack("a", 12),
            // a again after an OK ack; b again while still invisible to consumer 0.
            recv(1, false, 20, &[("a", 0), ("b", 1)]),
        ];
        let k = kinds(&bad);
        for want in ["acked-redelivered", "concurrent-ownership"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn a_send_that_may_repeat_is_a_counted_retry_duplicate_not_a_violation() {
        // The same history with and without the flag: stored twice, delivered after an ack,
        // and delivered to two consumers at once.
        let h = |flag: bool| {
            vec![
                repeatable(send("a", None, 0, Result3::Ok, Some(0)), flag),
                repeatable(send("c", None, 0, Result3::Ok, Some(2)), flag),
                recv(0, false, 10, &[("a", 0), ("c", 2)]),
                recv(1, false, 11, &[("a", 1), ("c", 3)]),
                ack("a", 12),
                recv(0, false, 20, &[("a", 1)]),
            ]
        };
        let (anomalies, stats) = super::super::check(&h(true));
        assert!(anomalies.is_empty(), "{anomalies:?}");
        // a and c each stored twice, and a delivered after its ack.
        assert_eq!(stats.retry_duplicates, 3);
        let k = kinds(&h(false));
        for want in ["duplicate", "acked-redelivered", "concurrent-ownership"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }
}
