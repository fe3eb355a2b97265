//! The send side of a history, indexed once for every invariant: what was attempted (body and
//! invocation time), what definitely failed, what was acknowledged or left unknown, which ids
//! may repeat, each message's first OK ack, the FIFO sends of every message group, which
//! messages were scheduled and recalled, and which were transactional and committed.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::Op;
use super::Result3;

/// See the module docs.
pub(super) struct Sends<'h> {
    /// Sends that may have happened: id → (body, invoked).
    pub attempted: BTreeMap<&'h str, (&'h [u8], u64)>,
    /// Ids whose every send definitely failed.
    pub failed: BTreeSet<&'h str>,
    /// Ids acknowledged OK.
    pub ok: BTreeSet<&'h str>,
    /// Ids with an unknown outcome.
    pub info: BTreeSet<&'h str>,
    /// Ids the client may have stored more than once (`Op::Send::may_repeat`).
    pub repeats: BTreeSet<&'h str>,
    /// Id → completion of its first OK ack.
    pub first_ack: BTreeMap<&'h str, u64>,
    /// Message group → its sends in history order: (invoked, id, outcome).
    pub fifo: BTreeMap<&'h str, Vec<(u64, &'h str, Result3)>>,
    /// Acknowledged ids retention deleted legitimately (filled by `retention::check`).
    pub expired: BTreeSet<&'h str>,
    /// Scheduled ids → no delivery may complete before this ([`Op::Scheduled`]).
    pub scheduled: BTreeMap<&'h str, u64>,
    /// Ids recalled OK.
    pub recalled: BTreeSet<&'h str>,
    /// Ids whose recall may have happened (unknown outcome).
    pub maybe_recalled: BTreeSet<&'h str>,
    /// Half messages → whether their producer commits them ([`Op::Transaction`]).
    pub txns: BTreeMap<&'h str, bool>,
    /// Transactions whose commit was answered OK ([`Op::EndTx`]).
    pub committed: BTreeSet<&'h str>,
}

impl<'h> Sends<'h> {
    pub fn index(history: &'h [Op]) -> Self {
        let mut s = Sends {
            attempted: BTreeMap::new(),
            failed: BTreeSet::new(),
            ok: BTreeSet::new(),
            info: BTreeSet::new(),
            repeats: BTreeSet::new(),
            first_ack: BTreeMap::new(),
            fifo: BTreeMap::new(),
            expired: BTreeSet::new(),
            scheduled: BTreeMap::new(),
            recalled: BTreeSet::new(),
            maybe_recalled: BTreeSet::new(),
            txns: BTreeMap::new(),
            committed: BTreeSet::new(),
        };
        for op in history {
            match op {
                Op::Send {
                    id,
                    body,
                    group,
                    invoked,
                    result,
                    may_repeat,
                    ..
                } => {
                    if *may_repeat {
                        s.repeats.insert(id);
                    }
                    match result {
                        Result3::Ok => s.ok.insert(id),
                        Result3::Info => s.info.insert(id),
                        Result3::Fail => s.failed.insert(id),
                    };
                    if *result != Result3::Fail {
                        s.attempted.entry(id).or_insert((body, *invoked));
                    }
                    if let Some(g) = group {
                        s.fifo.entry(g).or_default().push((*invoked, id, *result));
                    }
                }
                Op::Scheduled { id, not_before, .. } => {
                    s.scheduled.insert(id, *not_before);
                }
                Op::Transaction { id, commit, .. } => {
                    s.txns.insert(id, *commit);
                }
                Op::EndTx {
                    id,
                    commit: true,
                    result: Result3::Ok,
                    ..
                } => {
                    s.committed.insert(id);
                }
                Op::Recall { id, result, .. } => match result {
                    Result3::Ok => {
                        s.recalled.insert(id);
                    }
                    Result3::Info => {
                        s.maybe_recalled.insert(id);
                    }
                    Result3::Fail => {}
                },
                Op::Ack {
                    id,
                    completed,
                    result: Result3::Ok,
                    ..
                } => {
                    let t = s.first_ack.entry(id).or_insert(*completed);
                    *t = (*t).min(*completed);
                }
                _ => {}
            }
        }
        // A failed send whose id was later sent again successfully is not a failed message.
        let attempted = &s.attempted;
        s.failed.retain(|id| !attempted.contains_key(id));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_failed_send_retried_with_success_is_not_failed() {
        let h = vec![
            send("a", None, 0, Result3::Fail, None),
            send("a", None, 5, Result3::Ok, None),
            send("b", None, 6, Result3::Fail, None),
            ack("a", 20),
            ack("a", 10),
        ];
        let s = Sends::index(&h);
        assert!(!s.failed.contains("a") && s.failed.contains("b"));
        assert_eq!(s.attempted["a"].1, 5);
        assert_eq!(s.first_ack["a"], 11);
    }
}
