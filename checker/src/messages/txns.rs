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
//! - `txn-unchecked`: under an [`Op::TxCheckOwed`] promise, a half message acknowledged OK and
//!   left undecided by its producer (no end-transaction, or only ones that definitely failed)
//!   whose first check-back ([`Op::TxChecked`]) did not come within the bound of its
//!   acknowledgement, though the history lasted past it. (Outside such a promise a check may
//!   legitimately never arrive: while no producer is reachable the broker counts its checks
//!   and, after the last, discards the transaction.)

use std::collections::BTreeMap;

use super::Result3;

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
    st.transactions = s.txns.len();
    st.tx_committed = s.committed.len();
    if s.txns.is_empty() {
        return;
    }
    unchecked(history, s, out, st);
    let aborted = |id: &str, what: &str, out: &mut Vec<Anomaly>| {
        if s.txns.get(id) == Some(&false) {
            out.push(anomaly(
                "txn-rolled-back-visible",
                format!("{id} was {what} although its transaction is rolled back"),
            ));
        }
    };
    let mut first = FirstDeliveries::default();
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
                    aborted(&m.id, "received", out);
                    if !*fifo
                        && m.attempt == 1
                        && s.txns.contains_key(m.id.as_str())
                        && !s.repeats.contains(m.id.as_str())
                        && first.copy(&m.id, *invoked, *completed, resets)
                    {
                        out.push(anomaly(
                            "txn-duplicate",
                            format!("{} was handed out as a first delivery twice", m.id),
                        ));
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

/// `txn-unchecked` (see the module docs); counts the checks and the longest first-check delay.
fn unchecked(history: &[Op], s: &Sends<'_>, out: &mut Vec<Anomaly>, st: &mut Stats) {
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    let mut decided = std::collections::BTreeSet::new();
    let mut first_check: BTreeMap<&str, u64> = BTreeMap::new();
    let mut owed = None;
    let mut end = 0u64;
    for op in history {
        match op {
            Op::Send {
                id,
                completed,
                result: Result3::Ok,
                ..
            } if s.txns.contains_key(id.as_str()) => {
                acked.entry(id).or_insert(*completed);
            }
            // A decision that may have applied: no check is owed after it.
            Op::EndTx { id, result, .. } if *result != Result3::Fail => {
                decided.insert(id.as_str());
            }
            Op::TxChecked { id, at } => {
                st.tx_checks += 1;
                let t = first_check.entry(id).or_insert(*at);
                *t = (*t).min(*at);
            }
            Op::TxCheckOwed { from, within } => owed = owed.or(Some((*from, *within))),
            _ => {}
        }
        end = end.max(crate::jsonl::span(op).1);
    }
    let Some((from, within)) = owed else {
        return;
    };
    for (id, at) in acked {
        if at < from || decided.contains(id) || at.saturating_add(within) > end {
            continue;
        }
        st.tx_owed += 1;
        match first_check.get(id) {
            Some(c) if *c <= at + within => {
                st.tx_first_check_max_us = st.tx_first_check_max_us.max(c.saturating_sub(at));
            }
            Some(c) => out.push(anomaly(
                "txn-unchecked",
                format!(
                    "{id}: first check {} ms after its acknowledgement, bound {} ms",
                    (c - at) / 1_000,
                    within / 1_000
                ),
            )),
            None => out.push(anomaly(
                "txn-unchecked",
                format!(
                    "{id}: never checked, acknowledged {} ms before the history ends (bound {} ms)",
                    (end - at) / 1_000,
                    within / 1_000
                ),
            )),
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

    fn checked(id: &str, at: u64) -> Op {
        Op::TxChecked { id: id.into(), at }
    }

    #[test]
    fn undecided_transactions_owed_a_check_must_get_it_in_time() {
        let owed = Op::TxCheckOwed {
            from: 1_000,
            within: 3_000,
        };
        let clean = vec![
            // Before the promise: never checked, fine.
            send("a", None, 0, Result3::Ok, None),
            half("a", true),
            owed.clone(),
            // Checked in time.
            send("b", None, 1_000, Result3::Ok, None),
            half("b", false),
            checked("b", 3_500),
            // Decided by its producer (an unknown answer may have applied): not owed.
            send("c", None, 1_000, Result3::Ok, None),
            half("c", true),
            end("c", true, 1_500, Result3::Info),
            // Its send failed: nothing stored.
            send("d", None, 1_000, Result3::Fail, None),
            half("d", true),
            // Too late in the history to judge.
            send("e", None, 9_000, Result3::Ok, None),
            half("e", true),
            recv(0, false, 10_000, &[]),
        ];
        assert!(kinds(&clean).is_empty(), "{:?}", kinds(&clean));
        let (_, st) = super::super::check(&clean);
        assert_eq!((st.tx_owed, st.tx_checks), (1, 1));
        assert_eq!(st.tx_first_check_max_us, 3_500 - 1_001);

        let bad = vec![
            owed,
            // Never checked.
            send("f", None, 1_000, Result3::Ok, None),
            half("f", true),
            // Its rollback definitely failed: still undecided, checked too late.
            send("g", None, 1_000, Result3::Ok, None),
            half("g", false),
            end("g", false, 1_200, Result3::Fail),
            checked("g", 4_500),
            recv(0, false, 10_000, &[]),
        ];
        let k = kinds(&bad);
        assert_eq!(
            k.iter().filter(|k| **k == "txn-unchecked").count(),
            2,
            "{k:?}"
        );
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
