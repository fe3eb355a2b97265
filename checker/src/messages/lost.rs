//! `lost`: a send acknowledged OK must be delivered to a consumer (plain or FIFO) by the end
//! of the history (which ends with a drain), unless it was recalled (or may have been);
//! `timer-lost` if it was a scheduled message; for a transaction's half message, once its
//! commit was answered OK (`txn-committed-lost`). Also counts deliveries for the report.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::Anomaly;
use super::Op;
use super::Stats;
use super::anomaly;
use super::sends::Sends;

pub(super) fn check(history: &[Op], s: &Sends<'_>, out: &mut Vec<Anomaly>, st: &mut Stats) {
    for (id, kind) in missing(history, s) {
        out.push(anomaly(
            kind,
            format!("{id} was acknowledged but never delivered"),
        ));
    }
    let (received, fifo) = deliveries(history);
    let delivered = |id: &str| received.contains_key(id) || fifo.contains(id);
    st.sent_ok = s.ok.len();
    st.sent_info = s.info.len();
    st.sent_fail = s.failed.len();
    st.received = received.len();
    st.redeliveries = received.values().map(|n| n - 1).sum();
    st.recovered = s.info.iter().filter(|id| delivered(id)).count();
    st.expired = s.expired.iter().filter(|id| !delivered(id)).count();
}

/// Deliveries by plain consumers (id → how many) and the ids FIFO consumers received.
fn deliveries(history: &[Op]) -> (BTreeMap<&str, usize>, BTreeSet<&str>) {
    let mut received: BTreeMap<&str, usize> = BTreeMap::new();
    let mut fifo: BTreeSet<&str> = BTreeSet::new();
    for op in history {
        if let Op::Receive {
            fifo: is_fifo,
            msgs,
            ..
        } = op
        {
            for m in msgs {
                if *is_fifo {
                    fifo.insert(&m.id);
                } else {
                    *received.entry(&m.id).or_default() += 1;
                }
            }
        }
    }
    (received, fifo)
}

/// The messages owed to the history's consumers that none received, each with its anomaly
/// name (`lost`, `timer-lost` or `txn-committed-lost`).
pub(super) fn missing<'h>(history: &'h [Op], s: &Sends<'h>) -> Vec<(&'h str, &'static str)> {
    let (received, fifo) = deliveries(history);
    let delivered = |id: &str| received.contains_key(id) || fifo.contains(id);
    // A half message is owed to consumers once its commit is answered OK (whatever its send's
    // answer said), not before.
    let owed =
        s.ok.iter()
            .filter(|id| !s.txns.contains_key(*id))
            .chain(&s.committed);
    let mut out = Vec::new();
    for id in owed {
        // A recalled message is never delivered; one whose recall may have happened may not be.
        let recalled = s.recalled.contains(id) || s.maybe_recalled.contains(id);
        if !delivered(id) && !s.expired.contains(id) && !recalled {
            let kind = if s.scheduled.contains_key(id) {
                "timer-lost"
            } else if s.txns.contains_key(id) {
                "txn-committed-lost"
            } else {
                "lost"
            };
            out.push((*id, kind));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Result3;
    use super::super::check;
    use super::super::testing::*;

    #[test]
    fn acknowledged_sends_must_be_delivered_unknown_ones_may_be() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            send("b", None, 2, Result3::Info, None),
            send("c", None, 4, Result3::Fail, None),
            send("f", Some("g"), 4, Result3::Ok, None),
            recv(0, false, 10, &[("a", 0), ("b", 1)]),
            recv(1, false, 200, &[("b", 1)]),
            recv(2, true, 10, &[("f", 2)]),
        ];
        let (a, st) = check(&h);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(
            (st.sent_ok, st.sent_info, st.sent_fail, st.recovered),
            (2, 1, 1, 1)
        );
        assert_eq!(st.redeliveries, 1);
        let lost = vec![
            send("a", None, 0, Result3::Ok, None),
            recv(0, false, 10, &[]),
        ];
        assert_eq!(kinds(&lost), vec!["lost"]);
    }
}
