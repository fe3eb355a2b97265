//! Model test of SQL92 receives (issue 16): random sends (with and without the property the
//! filter reads), SQL92 receives judged as the leader judges them (the messages the receive
//! would reach first, [`BrokerState::reach_new`], evaluated by the real [`Sql92`], stopping
//! once enough match or at a random cap), acks, invisibility expiries, FIFO or plain groups,
//! all applied through the real entry encoding (`op::POP_SQL`). Checks:
//! - a filtered consumer never receives a message the expression does not match;
//! - it never skips one it matches: once drained, every matching message was delivered;
//! - a receive never goes past what was judged: a queue's receive position stays within
//!   the verdicts' runs;
//! - the state's invariants hold after every entry (the harness checks them).

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use broker::command::Ack;
use broker::command::Command;
use broker::command::Pop;
use broker::command::PopOrder;
use broker::command::Run;
use broker::command::TagFilter;
use broker::command::Verdicts;
use broker::filter::MessageProperties;
use broker::filter::sql92::Sql92;
use broker::model::GroupConfig;
use broker::model::QueueId;
use broker::model::StoredMessage;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::state::Outcome;
use proptest::prelude::*;

#[path = "support/harness.rs"]
mod harness;

use harness::Harness;
use harness::msg;

const QUEUES: u32 = 3;
const EXPRESSION: &str = "n >= 5 AND (TAGS IS NULL OR TAGS <> 'skip')";

#[derive(Debug, Clone)]
enum Op {
    /// A message on `queue` with property `n` (none if `None`) and tag "skip" if `skip`.
    Send {
        queue: u32,
        n: Option<u8>,
        skip: bool,
    },
    /// A SQL92 receive of `max`, judged up to `cap` messages.
    Pop { max: u8, cap: u8, one_queue: bool },
    /// Acknowledge the oldest delivery still held.
    Ack,
    /// Time passes (invisibility ends).
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..QUEUES, proptest::option::of(0u8..10), proptest::bool::weighted(0.2))
            .prop_map(|(queue, n, skip)| Op::Send { queue, n, skip }),
        3 => (1u8..6, 1u8..12, any::<bool>()).prop_map(|(max, cap, one_queue)| Op::Pop { max, cap, one_queue }),
        2 => Just(Op::Ack),
        1 => (1u16..400).prop_map(Op::Advance),
    ]
}

/// A receive of `max` for group "g", judged as [`broker::filter::judge`] does, with at most
/// `cap` messages looked at.
fn judged_pop(
    h: &Harness,
    sql: &Sql92,
    messages: &BTreeMap<(u32, u64), StoredMessage>,
    max: u32,
    cap: u64,
    queue: Option<u32>,
) -> Pop {
    let mut pop = Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: queue.map(QueueId),
        max,
        invisible_ms: 100,
        filter: TagFilter::All,
        max_bytes: u64::MAX,
        order: PopOrder::OldestFirst,
        sql: Some(EXPRESSION.into()),
        verdicts: None,
    };
    let mut v = Verdicts::default();
    let mut matched = 0;
    for (q, off, _) in h.state.reach_new(&pop, cap, h.state.clock_ms) {
        if matched >= max {
            break;
        }
        let wanted = sql.matches(&MessageProperties::new(&messages[&(q, off)]));
        v.queues
            .entry(QueueId(q))
            .or_insert_with(|| Run::new(off))
            .push(wanted);
        matched += u32::from(wanted);
    }
    pop.verdicts = Some(v);
    pop
}

fn run(fifo: bool, ops: Vec<Op>) {
    let sql = Sql92::parse(EXPRESSION).unwrap();
    let mut h = Harness::new(1_000);
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
        // FIFO receives by message group (`take_fifo`), as every cluster since issue 14.
        Command::FifoGroups,
    ]);
    let mut messages: BTreeMap<(u32, u64), StoredMessage> = BTreeMap::new();
    let mut delivered: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut held: Vec<Ack> = Vec::new();
    let mut seq = 0;
    let mut step = |h: &mut Harness, op: Op, held: &mut Vec<Ack>| match op {
        Op::Send { queue, n, skip } => {
            seq += 1;
            let mut m = msg(queue, seq);
            if let Some(n) = n {
                m.properties.insert("n".into(), n.to_string());
            }
            if skip {
                m.tag = Some("skip".into());
            }
            m.message_group = Some(format!("mg{}", seq % 4));
            match h.apply1(Command::Send(m.clone())) {
                Outcome::Sent { queue, offset } => {
                    messages.insert((queue.0, offset.0), m);
                }
                o => panic!("send: {o:?}"),
            }
        }
        Op::Pop {
            max,
            cap,
            one_queue,
        } => {
            let queue = one_queue.then_some(seq as u32 % QUEUES);
            let pop = judged_pop(h, &sql, &messages, u32::from(max), u64::from(cap), queue);
            let runs = pop.verdicts.clone().unwrap();
            let o = h.apply1(Command::Pop(pop));
            let Outcome::Popped { deliveries, .. } = o else {
                panic!("receive: {o:?}")
            };
            assert!(deliveries.len() <= usize::from(max));
            for d in deliveries {
                let at = (d.receipt.queue.0, d.receipt.offset.0);
                assert!(
                    sql.matches(&MessageProperties::new(&messages[&at])),
                    "delivered {at:?}, which the expression does not match"
                );
                delivered.insert(at);
                held.push(Ack {
                    group: "g".into(),
                    topic: "t".into(),
                    receipt: d.receipt,
                });
            }
            // Nothing past what was judged.
            for (q, r) in &runs.queues {
                let next = h
                    .state
                    .pops
                    .get(&("g".to_string(), "t".to_string(), q.0))
                    .map_or(0, |pq| pq.next);
                assert!(
                    next <= r.from.0 + u64::from(r.len),
                    "queue {q}: went to {next}, past the run {r:?}"
                );
            }
        }
        Op::Ack => {
            if !held.is_empty() {
                let a = held.remove(0);
                h.apply1(Command::Ack(a));
            }
        }
        Op::Advance(ms) => h.now += u64::from(ms),
    };
    for op in ops {
        step(&mut h, op, &mut held);
    }
    // Drain: acknowledge what is held, let the rest expire, receive until nothing is left.
    for _ in 0..1000 {
        while !held.is_empty() {
            step(&mut h, Op::Ack, &mut held);
        }
        step(&mut h, Op::Advance(200), &mut held);
        step(
            &mut h,
            Op::Pop {
                max: 5,
                cap: 7,
                one_queue: false,
            },
            &mut held,
        );
        let left = (0..QUEUES).any(|q| {
            let end = h.state.queue("t", q).map_or(0, |c| c.end());
            h.state
                .pops
                .get(&("g".to_string(), "t".to_string(), q))
                .is_none_or(|pq| pq.next < end || !pq.inflight.is_empty())
                && end > 0
        });
        if !left && held.is_empty() {
            break;
        }
    }
    let wanted: BTreeSet<(u32, u64)> = messages
        .iter()
        .filter(|(_, m)| sql.matches(&MessageProperties::new(m)))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(delivered, wanted, "matching messages delivered");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_sql_consumer_gets_every_matching_message_and_nothing_else(
        fifo in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(fifo, ops);
    }
}
