//! Model test of priority topics (issue 16, item 2): random priority and plain sends, placed
//! as `service::send` places them (queue = priority, the last queue for every priority from its
//! own up), receives of random sizes, acks and time passing, all applied through the real
//! entry encoding. The model keeps its own list of the messages waiting (stored, never handed
//! out) and checks every receive against the contract:
//! - a receive hands out the best of what waits: no message left waiting ranks before one it
//!   took, where a message that has waited [`limits::PRIORITY_AGING_MS`] ranks before every
//!   younger one (oldest first among them), and among younger ones the higher priority, then
//!   the older, ranks first;
//! - so nothing starves: once aged, a message waits only behind older aged ones;
//! - nothing is handed out twice, nothing is lost (drained at the end, all delivered).

use std::collections::BTreeMap;

use broker::command::Ack;
use broker::command::Command;
use broker::command::Pop;
use broker::command::PopOrder;
use broker::limits;
use broker::model::GroupConfig;
use broker::model::MessageKind;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::state::Outcome;
use proptest::prelude::*;

#[path = "support/harness.rs"]
mod harness;

use harness::Harness;
use harness::msg;
use harness::pop_any;

/// Priority levels (queues) of the topic; priorities above the last share its queue.
const LEVELS: u32 = 4;

#[derive(Debug, Clone)]
enum Op {
    /// `count` messages in one entry, each of `priority` (`None`: a plain message).
    Send { priority: Option<u32>, count: u8 },
    /// A receive from any queue of up to `max`.
    Pop { max: u8 },
    /// Acknowledge everything held.
    Ack,
    /// Time passes.
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (proptest::option::of(0u32..7), 1u8..4).prop_map(|(priority, count)| Op::Send { priority, count }),
        3 => (1u8..6).prop_map(|max| Op::Pop { max }),
        1 => Just(Op::Ack),
        2 => (1u32..40_000).prop_map(Op::Advance),
    ]
}

/// A message waiting in the model: where it is, its priority, when it was stored.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    priority: u32,
    store_ms: u64,
    /// Log index then position in the entry: the order of storing.
    seq: (u64, u32),
}

/// The contract's order: aged messages first, oldest first; then higher priority (capped at
/// the last level, which is one queue), then older.
fn rank(w: &Waiting, now: u64) -> (bool, u32, (u64, u32)) {
    if now - w.store_ms >= limits::PRIORITY_AGING_MS {
        (false, 0, w.seq)
    } else {
        (true, LEVELS - 1 - w.priority.min(LEVELS - 1), w.seq)
    }
}

fn run(ops: Vec<Op>) {
    let mut h = Harness::new(1_000);
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: LEVELS,
            kind: TopicKind::Priority,
        }),
        Command::UpsertGroup(GroupConfig::with_defaults("g")),
    ]);
    // (queue, offset) -> the message as the model sees it.
    let mut waiting: BTreeMap<(u32, u64), Waiting> = BTreeMap::new();
    let mut delivered = 0usize;
    let mut sent = 0usize;
    let mut held: Vec<Ack> = Vec::new();
    let mut n = 0;
    let mut step = |h: &mut Harness, op: Op| match op {
        Op::Send { priority, count } => {
            let cmds: Vec<Command> = (0..count)
                .map(|_| {
                    n += 1;
                    let p = priority.unwrap_or(0);
                    let mut m = msg(p.min(LEVELS - 1), n);
                    if let Some(p) = priority {
                        m.kind = MessageKind::Priority(p);
                    }
                    Command::Send(m)
                })
                .collect();
            let outcomes = h.apply(&cmds);
            for (i, (o, c)) in outcomes.iter().zip(&cmds).enumerate() {
                let (Outcome::Sent { queue, offset }, Command::Send(m)) = (o, c) else {
                    panic!("send: {o:?}");
                };
                assert_eq!(queue.0, m.queue.0);
                sent += 1;
                waiting.insert(
                    (queue.0, offset.0),
                    Waiting {
                        priority: m.kind.priority(),
                        store_ms: h.now,
                        seq: (h.index, i as u32),
                    },
                );
            }
        }
        Op::Pop { max } => {
            let o = h.apply1(Command::Pop(pop_any(u32::from(max), 36_000_000)));
            let Outcome::Popped { deliveries, .. } = o else {
                panic!("receive: {o:?}")
            };
            let now = h.now;
            let mut worst = None;
            for d in &deliveries {
                let at = (d.receipt.queue.0, d.receipt.offset.0);
                let w = waiting
                    .remove(&at)
                    .expect("handed out twice, or never sent");
                worst = worst.max(Some(rank(&w, now)));
                held.push(Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    receipt: d.receipt,
                });
            }
            delivered += deliveries.len();
            if deliveries.len() < usize::from(max) {
                assert!(waiting.is_empty(), "a short receive left {waiting:?}");
            }
            if let Some(worst) = worst {
                for (at, w) in &waiting {
                    assert!(
                        rank(w, now) > worst,
                        "{at:?} ({w:?}) waits behind a message ranked {worst:?} at {now}"
                    );
                }
            }
        }
        Op::Ack => {
            for a in held.drain(..) {
                assert!(matches!(h.apply1(Command::Ack(a)), Outcome::Acked));
            }
        }
        Op::Advance(ms) => h.now += u64::from(ms),
    };
    for op in ops {
        step(&mut h, op);
    }
    for _ in 0..1000 {
        step(&mut h, Op::Pop { max: 5 });
    }
    assert!(waiting.is_empty(), "never delivered: {waiting:?}");
    assert_eq!(delivered, sent);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn receives_take_the_best_ranked_waiting_messages(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

/// The two rules by hand: a high priority sent last goes first; a low one that has waited the
/// aging bound goes before a fresher high one.
#[test]
fn higher_priority_first_until_a_message_has_waited_the_bound() {
    let send = |h: &mut Harness, n: u64, p: u32| {
        let mut m = msg(p.min(LEVELS - 1), n);
        m.kind = MessageKind::Priority(p);
        h.apply1(Command::Send(m))
    };
    let pop = |h: &mut Harness| {
        // Queue by queue as the op says: a priority topic ranks its receives either way.
        let p = Pop {
            order: PopOrder::QueueByQueue,
            ..pop_any(1, 36_000_000)
        };
        let Outcome::Popped { deliveries, .. } = h.apply1(Command::Pop(p)) else {
            panic!("no receive")
        };
        deliveries
            .iter()
            .map(|d| d.receipt.queue.0)
            .collect::<Vec<_>>()
    };
    let mut h = Harness::new(1_000);
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: LEVELS,
            kind: TopicKind::Priority,
        }),
        Command::UpsertGroup(GroupConfig::with_defaults("g")),
    ]);
    send(&mut h, 1, 0);
    send(&mut h, 2, 1);
    send(&mut h, 3, 9);
    assert_eq!(pop(&mut h), vec![LEVELS - 1]);
    assert_eq!(pop(&mut h), vec![1]);
    send(&mut h, 4, 2);
    h.now += limits::PRIORITY_AGING_MS;
    // Priority 0 waited the bound, priority 2 too but it is younger.
    send(&mut h, 5, 3);
    assert_eq!(pop(&mut h), vec![0]);
    assert_eq!(pop(&mut h), vec![2]);
    assert_eq!(pop(&mut h), vec![3]);
    assert_eq!(pop(&mut h), Vec::<u32>::new());
}
