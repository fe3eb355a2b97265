//! Model test of the broker's replicated state: random sends, receives, acks, invisibility
//! changes and clock advances, applied through the real entry encoding, against a per-message
//! model. Checks after every step:
//! - a receive hands out only messages never delivered or whose invisibility expired, each
//!   queue's new messages in offset order, with attempt = previous + 1;
//! - a message is held by at most one valid receipt (older receipts are refused);
//! - an acknowledged message is never delivered again;
//! - after `max_attempts` deliveries an expired message goes to the dead-letter topic, once;
//! - retention (a `Retain` up to some earlier log index) deletes exactly the messages in those
//!   entries: they are never delivered again, their receipts are refused, each queue starts
//!   after its deleted prefix, and nothing newer is touched;
//! - the state's own invariants hold, and a snapshot round trip changes nothing;
//! - a twin replica keeping its consume queues in files (a tiny layout, so a few hundred
//!   messages cross chunk, write and read-block boundaries) on a simulated disk gives the
//!   same outcomes and the same queues after every entry, including after checkpoints
//!   (snapshots) and power losses followed by restore and replay of the entries after the
//!   last snapshot.

use std::collections::BTreeMap;

use broker::command::Ack;
use broker::command::ChangeInvisible;
use broker::command::Command;
use broker::command::Expire;
use broker::command::Pop;
use broker::command::PopOrder;
use broker::command::Receipt;
use broker::command::Retain;
use broker::command::TagFilter;
use broker::command::TopicRetention;
use broker::model::GroupConfig;
use broker::model::QueueId;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::model::dlq_topic;
use broker::state::BrokerState;
use broker::state::Outcome;
use broker::state::Reject;
use proptest::prelude::*;

#[path = "support/harness.rs"]
mod harness;

use harness::Harness;
use harness::Twin;
use harness::msg;

const QUEUES: u32 = 3;
const MAX_ATTEMPTS: u32 = 3;
const BACKOFF: [u64; 2] = [50, 120];

#[derive(Debug, Clone)]
enum Op {
    Send {
        queue: u32,
        count: u8,
    },
    Pop {
        max: u8,
        invisible: u16,
        one_queue: Option<u32>,
        oldest: bool,
    },
    /// Acknowledge a delivery, or (`forward`) give it up to the dead-letter topic.
    Ack {
        pick: u16,
        stale: bool,
        forward: bool,
    },
    /// Change a delivery's invisibility, or (`nack`) report it failed: invisible for the
    /// group's backoff for its attempt.
    Change {
        pick: u16,
        invisible: u16,
        nack: bool,
    },
    Advance {
        ms: u16,
    },
    Retain {
        back: u8,
    },
    /// Give the topic a retention age of its own and expire what is older.
    Expire {
        age_ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..QUEUES, 1u8..5).prop_map(|(queue, count)| Op::Send { queue, count }),
        3 => (1u8..6, 1u16..400, proptest::option::of(0..QUEUES), any::<bool>()).prop_map(|(max, invisible, one_queue, oldest)| Op::Pop { max, invisible, one_queue, oldest }),
        3 => (any::<u16>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.2)).prop_map(|(pick, stale, forward)| Op::Ack { pick, stale, forward }),
        1 => (any::<u16>(), 0u16..400, any::<bool>()).prop_map(|(pick, invisible, nack)| Op::Change { pick, invisible, nack }),
        2 => (1u16..500).prop_map(|ms| Op::Advance { ms }),
        1 => (0u8..30).prop_map(|back| Op::Retain { back }),
        1 => (1_000u16..4_000).prop_map(|age_ms| Op::Expire { age_ms }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum M {
    New,
    Inflight {
        deadline: u64,
        seq: u64,
        attempt: u32,
    },
    Acked,
    Dead,
    /// Deleted by retention.
    Deleted,
}

fn run(ops: Vec<Op>, seed: u64) {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(seed));
    let mut g = GroupConfig::with_defaults("g");
    g.max_delivery_attempts = MAX_ATTEMPTS;
    // Short steps, so nacked messages come back within the ops' time; the last repeats.
    g.retry_backoff_ms = BACKOFF.to_vec();
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: QUEUES,
            kind: TopicKind::Normal,
        }),
        Command::UpsertGroup(g),
    ]);
    // (queue, offset) -> model state; plus every receipt ever issued.
    let mut model: BTreeMap<(u32, u64), M> = BTreeMap::new();
    let mut receipts: Vec<Receipt> = Vec::new();
    let mut next_offset = [0u64; QUEUES as usize];
    let mut dead = 0u64;
    let mut sent = 0u64;
    // The log index each message was stored at, and the first index retention kept.
    let mut log_of: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut log_start = 0u64;
    // The time each message was stored at (for topic retention ages).
    let mut stored_at: BTreeMap<(u32, u64), u64> = BTreeMap::new();

    for op in ops {
        match op {
            Op::Send { queue, count } => {
                let cmds: Vec<Command> = (0..count)
                    .map(|_| {
                        sent += 1;
                        Command::Send(msg(queue, sent))
                    })
                    .collect();
                for o in h.apply(&cmds) {
                    let Outcome::Sent { queue: q, offset } = o else {
                        panic!("{o:?}")
                    };
                    assert_eq!(q.0, queue);
                    assert_eq!(offset.0, next_offset[queue as usize], "dense offsets");
                    next_offset[queue as usize] += 1;
                    model.insert((queue, offset.0), M::New);
                    log_of.insert((queue, offset.0), h.index);
                    stored_at.insert((queue, offset.0), h.now);
                }
            }
            Op::Pop {
                max,
                invisible,
                one_queue,
                oldest,
            } => {
                let order = if oldest {
                    PopOrder::OldestFirst
                } else {
                    PopOrder::QueueByQueue
                };
                let pop = Pop {
                    group: "g".into(),
                    topic: "t".into(),
                    queue: one_queue.map(QueueId),
                    max: max as u32,
                    invisible_ms: invisible as u64,
                    filter: TagFilter::All,
                    max_bytes: u64::MAX,
                    order,
                    sql: None,
                    verdicts: None,
                };
                let new_before: Vec<(u32, u64)> = model
                    .iter()
                    .filter(|(_, m)| matches!(m, M::New))
                    .map(|(k, _)| *k)
                    .collect();
                // What the model allows to be handed out, and what must go to the DLQ first.
                let now = h.now;
                let o = h.apply1(Command::Pop(pop));
                let Outcome::Popped {
                    deliveries,
                    dead_lettered,
                } = o
                else {
                    panic!("{o:?}")
                };
                assert!(deliveries.len() <= max as usize);
                let mut last_new: BTreeMap<u32, u64> = BTreeMap::new();
                for d in &deliveries {
                    let key = (d.receipt.queue.0, d.receipt.offset.0);
                    if let Some(q) = one_queue {
                        assert_eq!(key.0, q, "delivered from another queue");
                    }
                    let m = model.get_mut(&key).expect("delivered an unknown message");
                    let attempt = match m {
                        M::New => {
                            if let Some(prev) = last_new.insert(key.0, key.1) {
                                assert!(key.1 > prev, "new messages of a queue out of order");
                            }
                            1
                        }
                        M::Inflight {
                            deadline, attempt, ..
                        } => {
                            assert!(
                                *deadline <= now,
                                "handed out a message still invisible until {deadline} at {now}"
                            );
                            assert!(*attempt < MAX_ATTEMPTS, "redelivered beyond max attempts");
                            *attempt + 1
                        }
                        M::Acked => panic!("redelivered an acked message {key:?}"),
                        M::Deleted => panic!("delivered a message retention deleted {key:?}"),
                        M::Dead => panic!("delivered a dead letter from the live topic {key:?}"),
                    };
                    assert_eq!(d.attempt, attempt, "attempt of {key:?}");
                    *m = M::Inflight {
                        deadline: d.deadline_ms,
                        seq: d.receipt.seq,
                        attempt,
                    };
                    receipts.push(d.receipt);
                }
                // Oldest first: the new messages handed out are the oldest in the log (by its
                // index) that were new, whatever their queue.
                if oldest && one_queue.is_none() {
                    let taken: Vec<(u32, u64)> = deliveries
                        .iter()
                        .filter(|d| d.attempt == 1)
                        .map(|d| (d.receipt.queue.0, d.receipt.offset.0))
                        .collect();
                    let mut by_age = new_before.clone();
                    by_age.sort_by_key(|k| log_of[k]);
                    let mut expect: Vec<(u32, u64)> = by_age[..taken.len()].to_vec();
                    let mut got = taken.clone();
                    expect.sort();
                    got.sort();
                    assert_eq!(got, expect, "oldest new messages first across queues");
                }
                // Dead letters: expired messages at max attempts in the queues that were scanned.
                let became_dead: Vec<(u32, u64)> = model
                    .iter()
                    .filter(|(_, m)| matches!(m, M::Inflight { deadline, attempt, .. } if *deadline <= now && *attempt >= MAX_ATTEMPTS))
                    .map(|(k, _)| *k)
                    .filter(|k| !deliveries.iter().any(|d| (d.receipt.queue.0, d.receipt.offset.0) == *k))
                    .collect();
                let dlq_end_before = dead;
                let dlq_end = h.state.queue(&dlq_topic("g"), 0).map_or(0, |c| c.end());
                assert_eq!(dlq_end - dlq_end_before, dead_lettered as u64);
                // Which of the candidates were moved is decided by scan order; mirror it from
                // the state: a candidate is dead now iff the state no longer has it in flight.
                for k in became_dead {
                    let still = h
                        .state
                        .pops
                        .get(&("g".into(), "t".into(), k.0))
                        .is_some_and(|p| p.inflight.contains_key(&k.1));
                    if !still {
                        model.insert(k, M::Dead);
                        dead += 1;
                    }
                }
                assert_eq!(dead, dlq_end, "dead-letter count");
            }
            Op::Ack {
                pick,
                stale,
                forward,
            } => {
                if receipts.is_empty() {
                    continue;
                }
                let mut r = receipts[pick as usize % receipts.len()];
                if stale {
                    r.seq += 1_000_000;
                }
                let key = (r.queue.0, r.offset.0);
                let valid =
                    matches!(model.get(&key), Some(M::Inflight { seq, .. }) if *seq == r.seq);
                let a = Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    receipt: r,
                };
                let o = h.apply1(if forward {
                    Command::DeadLetter(a)
                } else {
                    Command::Ack(a)
                });
                if valid && forward {
                    // In the dead-letter topic once, pointing at the message itself.
                    assert_eq!(o, Outcome::DeadLettered);
                    model.insert(key, M::Dead);
                    dead += 1;
                    let dlq = h.state.queue(&dlq_topic("g"), 0).unwrap();
                    assert_eq!(dlq.end(), dead, "dead-letter count");
                    let moved = dlq.get(dlq.end() - 1).unwrap();
                    let cq = h.state.queue("t", key.0).unwrap();
                    assert_eq!(moved.log_index, cq.get(key.1).unwrap().log_index);
                } else if valid {
                    assert_eq!(o, Outcome::Acked);
                    model.insert(key, M::Acked);
                } else if forward && !stale {
                    // A receipt the group was given, no longer current: nothing moves, and
                    // the service answers OK (a repeated forward must not loop).
                    assert_eq!(o, Outcome::Rejected(Reject::NoLongerInFlight));
                } else {
                    assert_eq!(
                        o,
                        Outcome::Rejected(Reject::InvalidReceipt),
                        "a stale receipt was accepted"
                    );
                }
            }
            Op::Change {
                pick,
                invisible,
                nack,
            } => {
                if receipts.is_empty() {
                    continue;
                }
                let r = receipts[pick as usize % receipts.len()];
                let key = (r.queue.0, r.offset.0);
                let valid =
                    matches!(model.get(&key), Some(M::Inflight { seq, .. }) if *seq == r.seq);
                let o = h.apply1(if nack {
                    Command::Nack(Ack {
                        group: "g".into(),
                        topic: "t".into(),
                        receipt: r,
                    })
                } else {
                    Command::ChangeInvisible(ChangeInvisible {
                        group: "g".into(),
                        topic: "t".into(),
                        receipt: r,
                        invisible_ms: invisible as u64,
                    })
                });
                match (valid, o) {
                    (
                        true,
                        Outcome::Changed {
                            receipt,
                            deadline_ms,
                        },
                    ) => {
                        assert_ne!(receipt.seq, r.seq, "a change issues a new receipt");
                        let Some(M::Inflight { attempt, .. }) = model.get(&key).cloned() else {
                            unreachable!()
                        };
                        // A nack: the group's step for the attempt that failed, the last
                        // step beyond the list; none at the last attempt (dead-lettered by
                        // the next receive).
                        let wait = if nack && attempt >= MAX_ATTEMPTS {
                            0
                        } else if nack {
                            BACKOFF[(attempt as usize - 1).min(BACKOFF.len() - 1)]
                        } else {
                            invisible as u64
                        };
                        assert_eq!(deadline_ms, h.now + wait);
                        model.insert(
                            key,
                            M::Inflight {
                                deadline: deadline_ms,
                                seq: receipt.seq,
                                attempt,
                            },
                        );
                        receipts.push(receipt);
                    }
                    (false, Outcome::Rejected(Reject::InvalidReceipt)) => {}
                    (v, o) => panic!("change with valid={v} gave {o:?}"),
                }
            }
            Op::Advance { ms } => h.now += ms as u64,
            Op::Expire { age_ms } => {
                let age = u64::from(age_ms);
                let out = h.apply(&[
                    Command::TopicRetention(TopicRetention {
                        topic: "t".into(),
                        max_age_ms: Some(age),
                    }),
                    Command::Expire(Expire { decided_ms: h.now }),
                ]);
                assert_eq!(out, vec![Outcome::Done, Outcome::Done]);
                let cutoff = h.now.saturating_sub(age);
                for (k, m) in model.iter_mut() {
                    if stored_at[k] < cutoff {
                        *m = M::Deleted;
                    }
                }
                for q in 0..QUEUES {
                    let deleted = (0..next_offset[q as usize])
                        .take_while(|o| model[&(q, *o)] == M::Deleted)
                        .count() as u64;
                    let start = h.state.queue("t", q).map_or(0, |c| c.start());
                    assert_eq!(start, deleted, "queue {q} starts after its expired prefix");
                    if let Some(p) = h.state.pops.get(&("g".to_string(), "t".to_string(), q)) {
                        assert!(p.inflight.keys().all(|o| *o >= start));
                        assert!(p.next >= start);
                    }
                }
                // Cleared again: only this op expires (the model's time is the test's).
                assert_eq!(
                    h.apply1(Command::TopicRetention(TopicRetention {
                        topic: "t".into(),
                        max_age_ms: None,
                    })),
                    Outcome::Done
                );
            }
            Op::Retain { back } => {
                let upto = h.index.saturating_sub(back as u64);
                let decided_ms = h.now;
                assert_eq!(
                    h.apply1(Command::Retain(Retain { upto, decided_ms })),
                    Outcome::Done
                );
                if upto >= log_start {
                    log_start = upto + 1;
                }
                for (k, m) in model.iter_mut() {
                    if log_of[k] < log_start {
                        *m = M::Deleted;
                    }
                }
                assert_eq!(h.state.log_start, log_start);
                for q in 0..QUEUES {
                    let deleted = (0..next_offset[q as usize])
                        .take_while(|o| model[&(q, *o)] == M::Deleted)
                        .count() as u64;
                    let start = h.state.queue("t", q).map_or(0, |c| c.start());
                    assert_eq!(start, deleted, "queue {q} starts after its deleted prefix");
                    if let Some(p) = h.state.pops.get(&("g".to_string(), "t".to_string(), q)) {
                        assert!(p.inflight.keys().all(|o| *o >= start));
                    }
                }
            }
        }
        // A snapshot restores to the same state.
        let snap = bincode::serde::encode_to_vec(&h.state, bincode::config::standard()).unwrap();
        let back: BrokerState =
            bincode::serde::decode_from_slice(&snap, bincode::config::standard())
                .unwrap()
                .0;
        assert_eq!(back, h.state);
    }

    // Liveness: keep receiving and acking; everything ends acked or dead.
    for _ in 0..(MAX_ATTEMPTS as usize + 2) * 4 {
        h.now += 10_000;
        let o = h.apply1(Command::Pop(Pop {
            group: "g".into(),
            topic: "t".into(),
            queue: None,
            max: 1024,
            invisible_ms: 1_000,
            filter: TagFilter::All,
            max_bytes: u64::MAX,
            order: Default::default(),
            sql: None,
            verdicts: None,
        }));
        let Outcome::Popped { deliveries, .. } = o else {
            panic!()
        };
        let acks: Vec<Command> = deliveries
            .iter()
            .map(|d| {
                Command::Ack(Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    receipt: d.receipt,
                })
            })
            .collect();
        for o in h.apply(&acks) {
            assert_eq!(o, Outcome::Acked);
        }
    }
    for q in 0..QUEUES {
        if let Some(p) = h.state.pops.get(&("g".to_string(), "t".to_string(), q)) {
            assert!(
                p.inflight.is_empty(),
                "queue {q} still has in-flight messages"
            );
            assert_eq!(
                p.next, next_offset[q as usize],
                "queue {q} not fully handed out"
            );
            assert_eq!(p.ack_offset(), next_offset[q as usize]);
        } else {
            assert_eq!(next_offset[q as usize], 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn receive_state_matches_model(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>()) {
        run(ops, seed);
    }
}

#[test]
fn tag_filter_skips_without_delivering_and_clock_never_goes_back() {
    let mut h = Harness::new(5_000);
    h.twin = Some(Twin::new(7));
    h.apply(&[Command::UpsertTopic(TopicConfig {
        name: "t".into(),
        queues: 1,
        kind: TopicKind::Normal,
    })]);
    let mut a = msg(0, 1);
    a.tag = Some("A".into());
    let mut b = msg(0, 2);
    b.tag = Some("B".into());
    h.apply(&[Command::Send(a), Command::Send(b)]);
    // A new leader whose clock is behind: the state's clock stays.
    h.now = 1_000;
    let o = h.apply1(Command::Pop(Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: None,
        max: 10,
        invisible_ms: 100,
        filter: TagFilter::Tags([broker::model::tag_hash(Some("B"))].into()),
        max_bytes: u64::MAX,
        order: Default::default(),
        sql: None,
        verdicts: None,
    }));
    let Outcome::Popped { deliveries, .. } = o else {
        panic!()
    };
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].receipt.offset.0, 1);
    assert_eq!(
        deliveries[0].deadline_ms, 5_100,
        "deadline from the state's clock, not the lagging leader's"
    );
    assert_eq!(h.state.clock_ms, 5_000);
}

/// An orderly (FIFO) group gets nothing newer from a queue while an earlier message of it is
/// invisible, and gets the expired ones back first. (Found by the whole-cluster simulation:
/// before this, FIFO groups were served like any other.)
#[test]
fn fifo_group_waits_for_the_head_of_the_queue() {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(7));
    let mut g = GroupConfig::with_defaults("g");
    g.fifo = true;
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: 1,
            kind: TopicKind::Normal,
        }),
        Command::UpsertGroup(g),
    ]);
    h.apply(
        &(1..=6)
            .map(|n| Command::Send(msg(0, n)))
            .collect::<Vec<_>>(),
    );
    let pop = |max: u32| {
        Command::Pop(Pop {
            group: "g".into(),
            topic: "t".into(),
            queue: None,
            max,
            invisible_ms: 100,
            filter: TagFilter::All,
            max_bytes: u64::MAX,
            order: Default::default(),
            sql: None,
            verdicts: None,
        })
    };
    let offsets = |o: Outcome| -> Vec<(u64, u32)> {
        let Outcome::Popped { deliveries, .. } = o else {
            panic!("{o:?}")
        };
        deliveries
            .iter()
            .map(|d| (d.receipt.offset.0, d.attempt))
            .collect()
    };
    assert_eq!(offsets(h.apply1(pop(2))), vec![(0, 1), (1, 1)]);
    // 0 and 1 are invisible: nothing newer comes out.
    assert_eq!(offsets(h.apply1(pop(2))), vec![]);
    // After they expire they come back first, then the next ones.
    h.now += 150;
    assert_eq!(offsets(h.apply1(pop(3))), vec![(0, 2), (1, 2), (2, 1)]);
    // A plain group is not held back.
    let o = h.apply1(Command::Pop(Pop {
        group: "plain".into(),
        topic: "t".into(),
        queue: None,
        max: 2,
        invisible_ms: 100,
        filter: TagFilter::All,
        max_bytes: u64::MAX,
        order: Default::default(),
        sql: None,
        verdicts: None,
    }));
    assert_eq!(offsets(o), vec![(0, 1), (1, 1)]);
}

/// Auto-creation proposed from a lagging replica never clobbers a configuration. (Found by the
/// whole-cluster simulation: a node restarted after a power loss re-created a FIFO group with
/// the defaults, and the group lost its order.)
/// A retention decided on a clock ahead of the log's (a leader whose timeline ran ahead) is
/// refused and deletes nothing; one decided within the slack applies.
#[test]
fn retention_decided_ahead_of_the_log_is_refused() {
    let mut h = Harness::new(10_000);
    h.twin = Some(Twin::new(7));
    h.apply1(Command::UpsertTopic(TopicConfig {
        name: "t".into(),
        queues: 1,
        kind: TopicKind::Normal,
    }));
    h.apply1(Command::Send(msg(0, 1)));
    h.apply1(Command::Send(msg(0, 2)));
    let ahead = Retain {
        upto: 2,
        decided_ms: 10_000 + broker::state::RETAIN_CLOCK_SLACK_MS + 1,
    };
    assert!(matches!(
        h.apply1(Command::Retain(ahead)),
        Outcome::Rejected(Reject::Invalid(_))
    ));
    assert_eq!(h.state.log_start, 0);
    assert_eq!(h.state.queue("t", 0).unwrap().start(), 0);
    let ok = Retain {
        upto: 2,
        decided_ms: 10_000 + broker::state::RETAIN_CLOCK_SLACK_MS,
    };
    assert_eq!(h.apply1(Command::Retain(ok)), Outcome::Done);
    assert_eq!(h.state.log_start, 3);
    assert_eq!(h.state.queue("t", 0).unwrap().start(), 1);
}

#[test]
fn auto_creation_never_overwrites() {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(7));
    let mut g = GroupConfig::with_defaults("g");
    g.fifo = true;
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: 2,
            kind: TopicKind::Fifo,
        }),
        Command::UpsertGroup(g.clone()),
        Command::CreateGroup(GroupConfig::with_defaults("g")),
        Command::CreateTopic(TopicConfig {
            name: "t".into(),
            queues: 8,
            kind: TopicKind::Mixed,
        }),
        Command::CreateGroup(GroupConfig::with_defaults("new")),
    ]);
    assert_eq!(h.state.groups["g"], g);
    assert_eq!(h.state.topics["t"].queues, 2);
    assert_eq!(h.state.topics["t"].kind, TopicKind::Fifo);
    assert!(!h.state.groups["new"].fifo);
}
