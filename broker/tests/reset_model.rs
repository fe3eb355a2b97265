//! Model test of consumer-group resets (issue 16, item 4): random sends, receives, acks, time
//! passing and resets (one queue or all; earliest, latest, an offset, a time) for a plain or a
//! FIFO group, applied through the real entry encoding. The model keeps, per queue, the
//! offsets the group is owed (stored and not handed out since the last reset there) and what
//! it holds in flight. Checks:
//! - a reset lands where its target says (earliest, latest, an offset clamped to the queue, the
//!   first message stored at or after a time), and says so in its outcome; the committed offset
//!   of pull consumers goes there too;
//! - every delivery is owed or a redelivery of one in flight: nothing before the new position
//!   comes back, nothing is handed out twice at once;
//! - receipts from before a reset are refused afterwards;
//! - once drained, the group got every message owed: from the new position on, nothing is
//!   skipped.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use broker::command::Ack;
use broker::command::Command;
use broker::command::Reset;
use broker::command::ResetTo;
use broker::model::GroupConfig;
use broker::model::QueueId;
use broker::model::QueueOffset;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::state::Outcome;
use broker::state::Reject;
use proptest::prelude::*;

#[path = "support/harness.rs"]
mod harness;

use harness::Harness;
use harness::msg;
use harness::pop_any;

const QUEUES: u32 = 2;

#[derive(Debug, Clone)]
enum Op {
    Send { queue: u32, group: u8 },
    Pop { max: u8 },
    Ack,
    Advance(u16),
    Reset { queue: Option<u32>, to: To },
}

#[derive(Debug, Clone, Copy)]
enum To {
    Earliest,
    Latest,
    Offset(u8),
    /// A time this many ms after the start.
    Time(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let to = prop_oneof![
        Just(To::Earliest),
        Just(To::Latest),
        (0u8..20).prop_map(To::Offset),
        (0u16..3000).prop_map(To::Time),
    ];
    prop_oneof![
        5 => (0..QUEUES, 0u8..3).prop_map(|(queue, group)| Op::Send { queue, group }),
        4 => (1u8..5).prop_map(|max| Op::Pop { max }),
        3 => Just(Op::Ack),
        2 => (1u16..300).prop_map(Op::Advance),
        1 => (proptest::option::of(0..QUEUES), to).prop_map(|(queue, to)| Op::Reset { queue, to }),
    ]
}

const START: u64 = 1_000;

#[derive(Default)]
struct Model {
    /// Per queue, the store time of each offset.
    stored: BTreeMap<u32, Vec<u64>>,
    /// Offsets owed: not handed out since the last reset of their queue.
    owed: BTreeSet<(u32, u64)>,
    /// In flight: (queue, offset) -> the receipt held.
    held: BTreeMap<(u32, u64), Ack>,
    /// Receipts a reset made stale, to try later.
    stale: Vec<Ack>,
}

fn run(fifo: bool, ops: Vec<Op>) {
    let mut h = Harness::new(START);
    let mut g = GroupConfig::with_defaults("g");
    g.fifo = fifo;
    g.max_delivery_attempts = 1000;
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: QUEUES,
            kind: TopicKind::Normal,
        }),
        Command::UpsertGroup(g),
        Command::FifoGroups,
    ]);
    let mut m = Model::default();
    let mut n = 0;
    let mut step = |h: &mut Harness, m: &mut Model, op: Op| match op {
        Op::Send { queue, group } => {
            n += 1;
            let mut s = msg(queue, n);
            s.message_group = Some(format!("mg{group}"));
            let Outcome::Sent { queue, offset } = h.apply1(Command::Send(s)) else {
                panic!("send refused")
            };
            let times = m.stored.entry(queue.0).or_default();
            assert_eq!(offset.0, times.len() as u64);
            times.push(h.now);
            m.owed.insert((queue.0, offset.0));
        }
        Op::Pop { max } => {
            let o = h.apply1(Command::Pop(pop_any(u32::from(max), 200)));
            let Outcome::Popped { deliveries, .. } = o else {
                panic!("receive: {o:?}")
            };
            for d in deliveries {
                let at = (d.receipt.queue.0, d.receipt.offset.0);
                let ack = Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    receipt: d.receipt,
                };
                if m.owed.remove(&at) {
                    assert!(!m.held.contains_key(&at), "{at:?} handed out twice at once");
                } else {
                    assert!(m.held.contains_key(&at), "{at:?}: neither owed nor held");
                    assert!(d.attempt > 1, "{at:?}: a first delivery of a held message");
                }
                m.held.insert(at, ack);
            }
        }
        Op::Ack => {
            if let Some((&at, _)) = m.held.iter().next() {
                let a = m.held.remove(&at).unwrap();
                // The model holds each delivery's newest receipt: it is always good.
                let o = h.apply1(Command::Ack(a));
                assert_eq!(o, Outcome::Acked, "ack of {at:?}");
            }
            if let Some(a) = m.stale.pop() {
                let o = h.apply1(Command::Ack(a));
                assert!(
                    matches!(
                        o,
                        Outcome::Rejected(Reject::InvalidReceipt | Reject::NoLongerInFlight)
                    ),
                    "a receipt from before a reset: {o:?}"
                );
            }
        }
        Op::Advance(ms) => h.now += u64::from(ms),
        Op::Reset { queue, to } => {
            let target = |q: u32| {
                let times = m.stored.get(&q).map_or(&[][..], |t| &t[..]);
                let end = times.len() as u64;
                match to {
                    To::Earliest => 0,
                    To::Latest => end,
                    To::Offset(o) => u64::from(o).min(end),
                    To::Time(t) => times
                        .iter()
                        .position(|s| *s >= START + u64::from(t))
                        .map_or(end, |p| p as u64),
                }
            };
            let o = h.apply1(Command::Reset(Reset {
                group: "g".into(),
                topic: "t".into(),
                queue: queue.map(QueueId),
                to: match to {
                    To::Earliest => ResetTo::Earliest,
                    To::Latest => ResetTo::Latest,
                    To::Offset(o) => ResetTo::Offset(QueueOffset(u64::from(o))),
                    To::Time(t) => ResetTo::Time(START + u64::from(t)),
                },
            }));
            let Outcome::Reset(moved) = o else {
                panic!("reset: {o:?}")
            };
            let queues: Vec<u32> = queue.map_or((0..QUEUES).collect(), |q| vec![q]);
            assert_eq!(moved.len(), queues.len());
            for (q, mv) in queues.into_iter().zip(moved) {
                let to = target(q);
                assert_eq!((mv.queue.0, mv.to.0), (q, to), "{mv:?}");
                assert_eq!(h.state.offsets.get("g", "t", q), Some(to));
                let end = m.stored.get(&q).map_or(0, |t| t.len() as u64);
                m.owed.retain(|(mq, _)| *mq != q);
                m.owed.extend((to..end).map(|off| (q, off)));
                let dropped: Vec<(u32, u64)> =
                    m.held.keys().filter(|(hq, _)| *hq == q).copied().collect();
                assert_eq!(mv.dropped as usize, dropped.len(), "in flight forgotten");
                for at in dropped {
                    m.stale.push(m.held.remove(&at).unwrap());
                }
            }
        }
    };
    for op in ops {
        step(&mut h, &mut m, op);
    }
    // Drain: ack what is held, let the rest expire, receive until nothing is owed.
    for _ in 0..2000 {
        if m.owed.is_empty() && m.held.is_empty() {
            break;
        }
        while !m.held.is_empty() {
            step(&mut h, &mut m, Op::Ack);
        }
        step(&mut h, &mut m, Op::Advance(250));
        step(&mut h, &mut m, Op::Pop { max: 4 });
    }
    assert!(
        m.owed.is_empty(),
        "never delivered after the reset: {:?}",
        m.owed
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn resets_move_a_plain_group_and_nothing_is_skipped_after(ops in proptest::collection::vec(op(), 1..100)) {
        run(false, ops);
    }

    #[test]
    fn resets_move_a_fifo_group_and_nothing_is_skipped_after(ops in proptest::collection::vec(op(), 1..100)) {
        run(true, ops);
    }
}
