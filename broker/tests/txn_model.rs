//! Model test of transactional messages in the broker's replicated state (issue 15): random
//! half messages, commits, rollbacks (from producers, check answers and repeats), check-backs,
//! clock advances, receives and retention against a model. A half message is invisible until
//! committed; a commit delivers it exactly once with its original id; a rolled-back or
//! discarded one is never delivered; a second decision changes nothing and is answered for
//! what it is; check-backs follow the schedule their commands give and end the transaction
//! after the last; the state (transactions included) survives a snapshot round trip and a
//! file-backed twin replica's power losses.

use broker::command::Ack;
use broker::command::AfterMax;
use broker::command::CheckTx;
use broker::command::Command;
use broker::command::CommitTx;
use broker::command::Half;
use broker::command::Pop;
use broker::command::Retain;
use broker::command::RollbackTx;
use broker::command::TagFilter;
use broker::command::TxKey;
use broker::command::TxSource;
use broker::model::MessageKind;
use broker::model::StoredMessage;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::state::BrokerState;
use broker::state::Outcome;
use broker::state::Reject;
use broker::state::txn::TxEnd;
use proptest::prelude::*;

#[path = "support/harness.rs"]
mod harness;

use harness::Harness;
use harness::Twin;
use harness::msg;

const QUEUES: u32 = 3;
const CHECK_AFTER: u64 = 600;
const INTERVAL: u64 = 400;
const MAX_CHECKS: u32 = 3;

#[derive(Debug, Clone)]
enum XOp {
    Half,
    Advance {
        ms: u16,
    },
    Commit {
        pick: u16,
        source: u8,
    },
    Rollback {
        pick: u16,
    },
    /// A decision naming another message id.
    Forged {
        pick: u16,
    },
    /// The leader's check-back task: a check for each due transaction, plus a repeat.
    Check {
        keep: bool,
    },
    Drain,
    Retain {
        back: u8,
    },
}

fn xop() -> impl Strategy<Value = XOp> {
    prop_oneof![
        4 => Just(XOp::Half),
        3 => (1u16..700).prop_map(|ms| XOp::Advance { ms }),
        3 => (any::<u16>(), 0u8..3).prop_map(|(pick, source)| XOp::Commit { pick, source }),
        2 => any::<u16>().prop_map(|pick| XOp::Rollback { pick }),
        1 => any::<u16>().prop_map(|pick| XOp::Forged { pick }),
        3 => any::<bool>().prop_map(|keep| XOp::Check { keep }),
        2 => Just(XOp::Drain),
        1 => (0u8..20).prop_map(|back| XOp::Retain { back }),
    ]
}

/// What became of a transaction, in the model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum F {
    Pending {
        next_check: u64,
        checks: u32,
    },
    /// Checks ran out; kept undecided.
    Parked,
    /// Committed: in its queue, stored by the commit at this log index.
    Visible(u64),
    Consumed,
    RolledBack,
    Discarded,
}

fn source(s: u8) -> TxSource {
    [TxSource::Client, TxSource::Check, TxSource::Admin][s as usize % 3]
}

fn receive_all(h: &mut Harness) -> Vec<broker::state::Delivery> {
    let o = h.apply1(Command::Pop(Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: None,
        max: 1024,
        invisible_ms: 1_000_000,
        filter: TagFilter::All,
        max_bytes: u64::MAX,
        order: Default::default(),
        sql: None,
        verdicts: None,
    }));
    let Outcome::Popped { deliveries, .. } = o else {
        panic!("{o:?}")
    };
    deliveries
}

fn run_txns(ops: Vec<XOp>, seed: u64) {
    let mut h = Harness::new(1_000_000);
    h.twin = Some(Twin::new(seed));
    h.apply1(Command::UpsertTopic(TopicConfig {
        name: "t".into(),
        queues: QUEUES,
        kind: TopicKind::Mixed,
    }));
    // Every transaction: its message, key and fate.
    let mut txs: Vec<(StoredMessage, TxKey, F)> = Vec::new();
    for op in ops {
        match op {
            XOp::Half => {
                let n = txs.len() as u64;
                let m = StoredMessage {
                    kind: MessageKind::Transaction,
                    message_id: format!("x{n}"),
                    ..msg((n % QUEUES as u64) as u32, n)
                };
                match h.apply1(Command::Half(Half {
                    check_after_ms: CHECK_AFTER,
                    message: m.clone(),
                })) {
                    Outcome::Half { key, queue } => {
                        assert_eq!(key.log_index, h.index);
                        assert_eq!(queue.0, m.queue.0);
                        let next_check = h.now + CHECK_AFTER;
                        txs.push((
                            m,
                            key,
                            F::Pending {
                                next_check,
                                checks: 0,
                            },
                        ));
                    }
                    other => panic!("half: {other:?}"),
                }
            }
            XOp::Advance { ms } => h.now += ms as u64,
            XOp::Commit { pick, source: s } => {
                if txs.is_empty() {
                    continue;
                }
                let i = pick as usize % txs.len();
                let (m, key, fate) = txs[i].clone();
                let o = h.apply1(Command::CommitTx(CommitTx {
                    key,
                    source: source(s),
                    message: m,
                }));
                match fate {
                    F::Pending { .. } | F::Parked => {
                        assert!(matches!(o, Outcome::Sent { .. }), "commit: {o:?}");
                        txs[i].2 = F::Visible(h.index);
                    }
                    F::Visible(_) | F::Consumed => {
                        assert_eq!(o, Outcome::Rejected(Reject::TxDecided(TxEnd::Committed)))
                    }
                    F::RolledBack => {
                        assert_eq!(o, Outcome::Rejected(Reject::TxDecided(TxEnd::RolledBack)))
                    }
                    F::Discarded => {
                        assert_eq!(o, Outcome::Rejected(Reject::TxDecided(TxEnd::Discarded)))
                    }
                }
            }
            XOp::Rollback { pick } => {
                if txs.is_empty() {
                    continue;
                }
                let i = pick as usize % txs.len();
                let (m, key, fate) = txs[i].clone();
                let o = h.apply1(Command::RollbackTx(RollbackTx {
                    key,
                    topic: m.topic.clone(),
                    message_id: m.message_id.clone(),
                    source: TxSource::Client,
                }));
                match fate {
                    F::Pending { .. } | F::Parked => {
                        assert_eq!(o, Outcome::Done);
                        txs[i].2 = F::RolledBack;
                    }
                    F::Visible(_) | F::Consumed => {
                        assert_eq!(o, Outcome::Rejected(Reject::TxDecided(TxEnd::Committed)))
                    }
                    F::RolledBack => {
                        assert_eq!(o, Outcome::Rejected(Reject::TxDecided(TxEnd::RolledBack)))
                    }
                    F::Discarded => {
                        assert_eq!(o, Outcome::Rejected(Reject::TxDecided(TxEnd::Discarded)))
                    }
                }
            }
            XOp::Forged { pick } => {
                if txs.is_empty() {
                    continue;
                }
                let i = pick as usize % txs.len();
                let (m, key, _) = txs[i].clone();
                let other = StoredMessage {
                    message_id: "forged".into(),
                    ..m.clone()
                };
                let o = h.apply1(Command::CommitTx(CommitTx {
                    key,
                    source: TxSource::Client,
                    message: other,
                }));
                assert_eq!(o, Outcome::Rejected(Reject::TxUnknown));
                let o = h.apply1(Command::RollbackTx(RollbackTx {
                    key,
                    topic: m.topic,
                    message_id: "forged".into(),
                    source: TxSource::Client,
                }));
                assert_eq!(o, Outcome::Rejected(Reject::TxUnknown));
            }
            XOp::Check { keep } => {
                let after_max = if keep {
                    AfterMax::Keep
                } else {
                    AfterMax::Discard
                };
                let due = h.state.txns.due(h.now, usize::MAX);
                let mut want: Vec<TxKey> = txs
                    .iter()
                    .filter(|t| matches!(t.2, F::Pending { next_check, .. } if next_check <= h.now))
                    .map(|t| t.1)
                    .collect();
                want.sort();
                let mut got: Vec<TxKey> = due.iter().map(|(k, _)| *k).collect();
                got.sort();
                assert_eq!(got, want, "due checks");
                for key in got {
                    let check = Command::CheckTx(CheckTx {
                        key,
                        interval_ms: INTERVAL,
                        max_checks: MAX_CHECKS,
                        after_max,
                    });
                    let o = h.apply1(check.clone());
                    let t = txs.iter_mut().find(|t| t.1 == key).unwrap();
                    let F::Pending { checks, .. } = t.2 else {
                        unreachable!()
                    };
                    if checks >= MAX_CHECKS {
                        assert_eq!(o, Outcome::Done);
                        t.2 = match after_max {
                            AfterMax::Discard => F::Discarded,
                            AfterMax::Keep => F::Parked,
                        };
                    } else {
                        assert_eq!(o, Outcome::TxChecked { checks: checks + 1 });
                        t.2 = F::Pending {
                            next_check: h.now + INTERVAL,
                            checks: checks + 1,
                        };
                    }
                    // A second check of the same round (another proposal, a new leader) is
                    // not due.
                    let again = h.apply1(check);
                    assert!(
                        matches!(
                            again,
                            Outcome::Rejected(Reject::TxNotDue | Reject::TxUnknown)
                        ),
                        "{again:?}"
                    );
                }
            }
            XOp::Drain => {
                let deliveries = receive_all(&mut h);
                let mut acks = Vec::new();
                for d in deliveries {
                    let (m, _, fate) = txs
                        .iter_mut()
                        .find(|t| t.2 == F::Visible(d.entry.log_index))
                        .expect("a delivery of a transaction the model did not commit");
                    assert_eq!(m.topic, d.topic);
                    assert_eq!(m.queue.0, d.receipt.queue.0);
                    *fate = F::Consumed;
                    acks.push(Command::Ack(Ack {
                        group: "g".into(),
                        topic: "t".into(),
                        receipt: d.receipt,
                    }));
                }
                for o in h.apply(&acks) {
                    assert_eq!(o, Outcome::Acked);
                }
            }
            XOp::Retain { back } => {
                let upto = h.index.saturating_sub(back as u64);
                h.apply1(Command::Retain(Retain {
                    upto,
                    decided_ms: h.now,
                }));
                for t in &mut txs {
                    match t.2 {
                        F::Pending { .. } | F::Parked => assert!(
                            t.1.log_index >= h.state.log_start,
                            "retention deleted an undecided transaction's entry"
                        ),
                        F::Visible(i) if i < h.state.log_start => t.2 = F::Consumed,
                        _ => {}
                    }
                }
            }
        }
        let undecided = txs
            .iter()
            .filter(|t| matches!(t.2, F::Pending { .. } | F::Parked))
            .count();
        assert_eq!(h.state.txns.len(), undecided, "undecided transactions");
        let snap = bincode::serde::encode_to_vec(&h.state, bincode::config::standard()).unwrap();
        let back: BrokerState =
            bincode::serde::decode_from_slice(&snap, bincode::config::standard())
                .unwrap()
                .0;
        assert_eq!(back, h.state);
    }
    // Every committed message not yet consumed is delivered once more, and nothing else is.
    let visible = txs.iter().filter(|t| matches!(t.2, F::Visible(_))).count();
    assert_eq!(receive_all(&mut h).len(), visible, "committed deliveries");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn transactions_match_model(ops in proptest::collection::vec(xop(), 1..100), seed in any::<u64>()) {
        run_txns(ops, seed);
    }
}

/// A half message is not what a receive sees; its commit is, with the original id.
#[test]
fn a_half_message_is_invisible_until_committed() {
    let mut h = Harness::new(1_000_000);
    h.apply1(Command::UpsertTopic(TopicConfig {
        name: "t".into(),
        queues: 1,
        kind: TopicKind::Transaction,
    }));
    let m = StoredMessage {
        kind: MessageKind::Transaction,
        ..msg(0, 1)
    };
    // A plain send to a transaction topic is refused, and a half message with another type.
    assert_eq!(
        h.apply1(Command::Send(msg(0, 2))),
        Outcome::Rejected(Reject::WrongMessageType)
    );
    assert!(matches!(
        h.apply1(Command::Half(Half {
            check_after_ms: 1,
            message: msg(0, 3),
        })),
        Outcome::Rejected(Reject::Invalid(_))
    ));
    let Outcome::Half { key, .. } = h.apply1(Command::Half(Half {
        check_after_ms: 6_000,
        message: m.clone(),
    })) else {
        panic!()
    };
    assert!(receive_all(&mut h).is_empty());
    assert!(!h.state.has_visible("g", "t", None, h.now));
    assert_eq!(h.state.txns.next_check(), Some(h.now + 6_000));
    assert!(matches!(
        h.apply1(Command::CommitTx(CommitTx {
            key,
            source: TxSource::Client,
            message: m.clone(),
        })),
        Outcome::Sent { .. }
    ));
    let d = receive_all(&mut h);
    assert_eq!(d.len(), 1);
    assert_eq!(h.state.txns.next_check(), None);
    assert_eq!(h.state.txns.committed, 1);
}
