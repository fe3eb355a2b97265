//! `order-violation` and `poll-skip`, per message group of a FIFO consumer group. A consumer
//! that acknowledged #j has processed it, so handing it an earlier #i afterwards inverts the
//! order (redelivering a whole unacknowledged batch does not); and a message may not be
//! delivered while an earlier acknowledged send of its group has never been.
//!
//! Order is promised among acknowledged sends. A send whose outcome was unknown (the client
//! gave up) may still be stored later, after sends that followed it: its request can sit in a
//! TCP retransmission queue across a partition and reach a broker seconds after the client
//! timed out (jepsen `partition`, leader-mute: f0-717, stored after f0-718..759). Such a
//! message is counted (`late_unknown_sends`), not reported — as Jepsen treats an
//! indeterminate operation, it may take effect at any time after it was invoked.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::Anomaly;
use super::Op;
use super::Result3;
use super::Stats;
use super::anomaly;
use super::resets::Resets;
use super::sends::Sends;

/// FIFO deliveries: (completed, position in the answer) ordered, and (receive invoked,
/// completed, id); OK acks: (completed, invoked, id).
struct Seen<'h> {
    by_completion: Vec<(u64, &'h str)>,
    receives: Vec<(u64, u64, &'h str)>,
    acks: Vec<(u64, u64, &'h str)>,
}

fn seen(history: &[Op]) -> Seen<'_> {
    let mut s = Seen {
        by_completion: Vec::new(),
        receives: Vec::new(),
        acks: Vec::new(),
    };
    for op in history {
        match op {
            Op::Receive {
                fifo: true,
                invoked,
                completed,
                msgs,
                ..
            } => {
                for (k, m) in msgs.iter().enumerate() {
                    s.by_completion.push((*completed * 1024 + k as u64, &m.id));
                    s.receives.push((*invoked, *completed, &m.id));
                }
            }
            Op::Ack {
                id,
                invoked,
                completed,
                result: Result3::Ok,
                ..
            } => s.acks.push((*completed, *invoked, id)),
            _ => {}
        }
    }
    s.by_completion.sort();
    s
}

type GroupSends<'h> = [(u64, &'h str, Result3)];

fn group(
    name: &str,
    sends: &GroupSends<'_>,
    (expired, resets): (&BTreeSet<&str>, &Resets),
    seen: &Seen<'_>,
    out: &mut Vec<Anomaly>,
    st: &mut Stats,
) {
    let index: BTreeMap<&str, usize> = sends.iter().enumerate().map(|(i, s)| (s.1, i)).collect();
    let acks: Vec<(u64, u64, usize)> = seen
        .acks
        .iter()
        .filter_map(|(t, a, id)| index.get(id).map(|i| (*t, *a, *i)))
        .collect();
    let mut late: BTreeSet<usize> = BTreeSet::new();
    for (invoked, completed, id) in &seen.receives {
        let Some(&i) = index.get(id) else { continue };
        // A reset after the later message's ack began starts the group over.
        let inverted = |&&(t, a, j): &&(u64, u64, usize)| {
            t < *invoked && j > i && !resets.between(true, a, *completed)
        };
        if let Some((t, _, j)) = acks.iter().find(inverted) {
            if sends[i].2 != Result3::Ok {
                late.insert(i);
                continue;
            }
            out.push(anomaly(
                "order-violation",
                format!("group {name}: #{i} {id} handed out at {invoked} after #{j} was acknowledged at {t}"),
            ));
        }
    }
    let mut delivered: BTreeSet<usize> = BTreeSet::new();
    for (_, id) in &seen.by_completion {
        let Some(&i) = index.get(id) else { continue };
        // An acknowledged send retention deleted (old enough) may be skipped.
        if let Some(skipped) = (0..i).find(|j| {
            sends[*j].2 == Result3::Ok && !delivered.contains(j) && !expired.contains(sends[*j].1)
        }) {
            out.push(anomaly(
                "poll-skip",
                format!(
                    "group {name}: #{i} {id} delivered before acknowledged #{skipped} {}",
                    sends[skipped].1
                ),
            ));
        }
        delivered.insert(i);
    }
    st.late_unknown_sends += late.len();
}

pub(super) fn check(
    history: &[Op],
    s: &Sends<'_>,
    resets: &Resets,
    out: &mut Vec<Anomaly>,
    st: &mut Stats,
) {
    let seen = seen(history);
    st.fifo_delivered = seen.by_completion.len();
    for (name, sends) in &s.fifo {
        group(name, sends, (&s.expired, resets), &seen, out, st);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Result3;
    use super::super::testing::*;

    #[test]
    fn unknown_sends_may_be_skipped_and_unacked_batches_come_back_whole() {
        let g = Some("g");
        let h = vec![
            send("f0", g, 0, Result3::Ok, None),
            send("f1", g, 2, Result3::Info, None),
            send("f2", g, 4, Result3::Ok, None),
            send("f3", g, 6, Result3::Ok, None),
            recv(0, true, 10, &[("f0", 0)]),
            ack("f0", 11),
            recv(0, true, 12, &[("f2", 2), ("f3", 3)]),
            recv(0, true, 200, &[("f2", 2), ("f3", 3)]),
            ack("f2", 202),
            recv(0, true, 400, &[("f3", 3)]),
        ];
        assert!(kinds(&h).is_empty(), "{:?}", kinds(&h));
    }

    #[test]
    fn an_unknown_send_stored_after_later_ones_is_counted_not_reported() {
        let g = Some("g");
        let h = vec![
            send("f0", g, 0, Result3::Ok, None),
            send("f1", g, 2, Result3::Info, None),
            send("f2", g, 4, Result3::Ok, None),
            recv(0, true, 10, &[("f0", 0), ("f2", 2)]),
            ack("f0", 11),
            ack("f2", 12),
            recv(0, true, 20, &[("f1", 1)]),
            ack("f1", 21),
        ];
        assert!(kinds(&h).is_empty(), "{:?}", kinds(&h));
        assert_eq!(super::super::check(&h).1.late_unknown_sends, 1);
        // The same order with an acknowledged f1 is a violation.
        let mut bad = h.clone();
        bad[1] = send("f1", g, 2, Result3::Ok, None);
        assert!(kinds(&bad).contains(&"order-violation"));
    }

    #[test]
    fn an_inversion_and_a_skip_are_named() {
        let g = Some("g");
        let bad = vec![
            send("f0", g, 0, Result3::Ok, None),
            send("f1", g, 2, Result3::Ok, None),
            send("f2", g, 4, Result3::Ok, None),
            recv(0, true, 10, &[("f0", 0), ("f2", 2)]),
            ack("f2", 20),
            recv(0, true, 400, &[("f1", 1)]),
        ];
        let k = kinds(&bad);
        assert!(k.contains(&"poll-skip"), "{k:?}");
        assert!(k.contains(&"order-violation"), "{k:?}");
    }
}
