//! A SQL92-filtered consumer group beside the main one (issue 16): its consumers are numbered
//! from [`FILTERED_CONSUMER`], subscribe to the plain topic with [`EXPRESSION`], and the
//! workloads (the simulator's and jepsen's) give every message the property [`PROPERTY`] = [`pick`] of its body, so the checker knows from the recorded send
//! which messages the group wants, without evaluating SQL. (The body, not the id: the
//! official SDKs choose the id as they send.)
//!
//! - `filter-mismatch`: the filtered group got a message its expression does not match;
//! - `filter-lost`: a message it matches, owed to consumers of the plain topic (as `lost`
//!   defines it), never reached it.
//!
//! The group's own deliveries are also checked as the main group's are (`acked-redelivered`,
//! `concurrent-ownership`, the duplicates of scheduled and transactional messages…), on a view
//! of the history with only its receives and acks ([`split`]); the main group's checks see
//! neither.

use std::collections::BTreeSet;

use super::Anomaly;
use super::Op;
use super::anomaly;
use super::lost;
use super::sends::Sends;

/// Consumer numbers from here on belong to the filtered group (jepsen's Python consumers are
/// 1000 and up, the FIFO consumer 99).
pub const FILTERED_CONSUMER: u32 = 10_000;
/// The property the workload sets on every message.
pub const PROPERTY: &str = "pick";
/// The filtered group's subscription: about one message in three.
pub const EXPRESSION: &str = "pick = 0";

/// The value of [`PROPERTY`] for a message with `body`: FNV-1a of the body, modulo 3
/// (`jepsen/python/workload.py` computes the same).
pub fn pick(body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in body {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 3
}

/// True if [`EXPRESSION`] matches a message with `body`.
pub fn wanted(body: &[u8]) -> bool {
    pick(body) == 0
}

/// True for an operation of the filtered group.
fn filtered(op: &Op) -> bool {
    match op {
        Op::Receive { consumer, .. } | Op::Ack { consumer, .. } => *consumer >= FILTERED_CONSUMER,
        _ => false,
    }
}

/// The history without the filtered group's receives and acks (the main group's view), and
/// with only them (the filtered group's view); `None` if there is no filtered group.
pub(super) fn split(history: &[Op]) -> Option<(Vec<Op>, Vec<Op>)> {
    if !history.iter().any(filtered) {
        return None;
    }
    // A reset names the plain or FIFO group: it explains nothing the filtered group got
    // (review of issue 16: left in its view, it excused the filtered group's receives too).
    let consumer_op =
        |op: &Op| matches!(op, Op::Receive { .. } | Op::Ack { .. } | Op::Reset { .. });
    let main = history.iter().filter(|op| !filtered(op)).cloned().collect();
    let view = history
        .iter()
        .filter(|op| filtered(op) || !consumer_op(op))
        .cloned()
        .collect();
    Some((main, view))
}

/// What the message checks found on the filtered group's view: its deliveries' violations are
/// kept (named for the group); what it was not sent is `filter-lost` only if it wanted it.
pub(super) fn check(view: &[Op], s: &Sends<'_>, found: Vec<Anomaly>, out: &mut Vec<Anomaly>) {
    const ELSEWHERE: [&str; 5] = [
        // Judged on the whole history already, or the group is not owed everything.
        "lost",
        "timer-lost",
        "txn-committed-lost",
        "duplicate",
        "inconsistent-offsets",
    ];
    out.extend(
        found
            .into_iter()
            .filter(|a| !ELSEWHERE.contains(&a.kind))
            .map(|a| Anomaly {
                detail: format!("filtered group: {}", a.detail),
                ..a
            }),
    );
    let plain: BTreeSet<&str> = view
        .iter()
        .filter_map(|op| match op {
            Op::Send {
                id,
                group: None,
                topic: None,
                ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let wants = |id: &str| s.attempted.get(id).is_some_and(|(body, _)| wanted(body));
    for (id, _) in lost::missing(view, s) {
        if plain.contains(id) && wants(id) {
            out.push(anomaly(
                "filter-lost",
                format!("{id} matches the filtered group's expression but never reached it"),
            ));
        }
    }
    let mut reported = BTreeSet::new();
    for op in view {
        let Op::Receive { msgs, .. } = op else {
            continue;
        };
        for m in msgs {
            if s.attempted.contains_key(m.id.as_str()) && !wants(&m.id) && reported.insert(&m.id) {
                out.push(anomaly(
                    "filter-mismatch",
                    format!(
                        "the filtered group got {}, which its expression does not match",
                        m.id
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Result3;
    use super::super::testing::*;
    use super::*;

    /// Ids the filtered group wants and does not.
    fn ids() -> (String, String) {
        let mut yes = None;
        let mut no = None;
        for i in 0.. {
            let id = format!("p0-{i}");
            match wanted(id.as_bytes()) {
                true if yes.is_none() => yes = Some(id),
                false if no.is_none() => no = Some(id),
                _ => {}
            }
            if let (Some(y), Some(n)) = (&yes, &no) {
                return (y.clone(), n.clone());
            }
        }
        unreachable!()
    }

    #[test]
    fn the_filtered_group_gets_what_it_matches_and_nothing_else() {
        let (yes, no) = ids();
        let f = FILTERED_CONSUMER;
        let base = vec![
            send(&yes, None, 0, Result3::Ok, Some(0)),
            send(&no, None, 2, Result3::Ok, Some(1)),
            recv(0, false, 10, &[(&yes, 0), (&no, 1)]),
        ];
        // It got its message; the main group got both: fine.
        let mut ok = base.clone();
        ok.push(recv(f, false, 10, &[(&yes, 0)]));
        assert!(kinds(&ok).is_empty(), "{:?}", kinds(&ok));
        // The main group's ack does not make the filtered group's delivery a redelivery.
        ok.push(ack(&yes, 20));
        ok.push(recv(f + 1, false, 300, &[(&yes, 0)]));
        assert!(kinds(&ok).is_empty(), "{:?}", kinds(&ok));
        // It got one it does not match.
        let mut bad = base.clone();
        bad.push(recv(f, false, 10, &[(&yes, 0), (&no, 1)]));
        assert_eq!(kinds(&bad), vec!["filter-mismatch"]);
        // It never got its message.
        let mut lost = base.clone();
        lost.push(recv(f, false, 10, &[]));
        assert_eq!(kinds(&lost), vec!["filter-lost"]);
        // Its own redelivery after its own ack is a violation.
        let mut again = base;
        again.push(recv(f, false, 10, &[(&yes, 0)]));
        again.push(Op::Ack {
            consumer: f,
            id: yes.clone(),
            invoked: 20,
            completed: 21,
            result: Result3::Ok,
        });
        again.push(recv(f, false, 30, &[(&yes, 0)]));
        assert_eq!(kinds(&again), vec!["acked-redelivered"]);
        // A reset of the plain group explains nothing the filtered group got.
        again.push(reset_op(false, 22, Result3::Ok));
        assert_eq!(kinds(&again), vec!["acked-redelivered"]);
    }
}
