//! Transactional messages: `txn-rolled-back-visible` and `txn-duplicate` (`txn-committed-lost` is
//! [`super::lost`]'s, which knows what was delivered at all).
//!
//! - `txn-rolled-back-visible`: a receive or pull handed out a message whose producer rolls its
//!   transaction back ([`Op::Transaction`] with `commit: false`): by its own rollback, or by its
//!   checker's answer to a check-back, or the broker's discard after the last check. None of
//!   these may make the message visible. (Elle's G1a for one-message transactions.)
//! - `txn-duplicate`: two receives by the main group both handed out a transaction's message as
//!   its first delivery (attempt 1): it was delivered from two copies (a commit applied twice,
//!   e.g. the producer's and a check answer's).

use std::collections::BTreeMap;

use super::Anomaly;
use super::Op;
use super::Stats;
use super::anomaly;
use super::sends::Sends;

pub(super) fn check(history: &[Op], s: &Sends<'_>, out: &mut Vec<Anomaly>, st: &mut Stats) {
    st.transactions = s.txns.len();
    st.tx_committed = s.committed.len();
    if s.txns.is_empty() {
        return;
    }
    let aborted = |id: &str, what: &str, out: &mut Vec<Anomaly>| {
        if s.txns.get(id) == Some(&false) {
            out.push(anomaly(
                "txn-rolled-back-visible",
                format!("{id} was {what} although its transaction is rolled back"),
            ));
        }
    };
    let mut first: BTreeMap<&str, u32> = BTreeMap::new();
    for op in history {
        match op {
            Op::Receive { fifo, msgs, .. } => {
                for m in msgs {
                    aborted(&m.id, "received", out);
                    if !*fifo
                        && m.attempt == 1
                        && s.txns.contains_key(m.id.as_str())
                        && !s.repeats.contains(m.id.as_str())
                    {
                        let n = first.entry(&m.id).or_default();
                        *n += 1;
                        if *n == 2 {
                            out.push(anomaly(
                                "txn-duplicate",
                                format!("{} was handed out as a first delivery twice", m.id),
                            ));
                        }
                    }
                }
            }
            Op::Pull { msgs, .. } => {
                for (_, id, _) in msgs {
                    aborted(id, "pulled", out);
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

    fn half(id: &str, commit: bool) -> Op {
        Op::Transaction {
            id: id.into(),
            invoked: 0,
            commit,
        }
    }

    fn end(id: &str, commit: bool, t: u64, result: Result3) -> Op {
        Op::EndTx {
            id: id.into(),
            commit,
            invoked: t,
            completed: t + 1,
            result,
        }
    }

    #[test]
    fn committed_once_rolled_back_never_and_undecided_unowed_is_clean() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            half("a", true),
            end("a", true, 5, Result3::Ok),
            send("b", None, 0, Result3::Ok, None),
            half("b", false),
            end("b", false, 5, Result3::Ok),
            // Left to the check-back, which had not come when the history ended: not owed.
            send("c", None, 0, Result3::Ok, None),
            half("c", true),
            // Its commit's answer was lost: it may or may not come.
            send("d", None, 0, Result3::Ok, None),
            half("d", true),
            end("d", true, 5, Result3::Info),
            recv(0, false, 100, &[("a", 0)]),
            ack("a", 102),
        ];
        assert!(kinds(&h).is_empty(), "{:?}", kinds(&h));
    }

    #[test]
    fn aborted_duplicate_and_lost_commits_are_caught() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            half("a", false),
            recv(0, false, 100, &[("a", 0)]),
            send("b", None, 0, Result3::Ok, None),
            half("b", true),
            end("b", true, 5, Result3::Ok),
            recv(0, false, 200, &[("b", 1)]),
            recv(1, false, 300, &[("b", 2)]),
            // Committed OK though its send's answer was lost, and never delivered.
            send("c", None, 0, Result3::Info, None),
            half("c", true),
            end("c", true, 5, Result3::Ok),
        ];
        let k = kinds(&h);
        for want in [
            "txn-rolled-back-visible",
            "txn-duplicate",
            "txn-committed-lost",
        ] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }
}
