//! Model test of the idempotent producer's window in the broker's replicated state (issue 15,
//! item 4): random plain, scheduled and transactional sends drawing their message ids from a
//! small pool (so many are repeats), clock advances, window changes and receives, against a
//! model of the window. A repeat inside the window gets the first store's answer and stores
//! nothing (no queue entry, no second timer or transaction); a repeat after
//! the window, after the cap pushed its id out, or before any window was set is a new message;
//! a file-backed twin replica with power losses and snapshots answers the same.

use std::collections::VecDeque;

use broker::command::Command;
use broker::command::DedupWindow;
use broker::command::Half;
use broker::model::MessageKind;
use broker::model::StoredMessage;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::state::Outcome;
use proptest::prelude::*;

#[path = "support/harness.rs"]
mod harness;

use harness::Harness;
use harness::Twin;
use harness::msg;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    Delayed,
    Half,
}

#[derive(Debug, Clone)]
enum DOp {
    Send { id: u8, kind: u8, queue: u8 },
    Advance { ms: u16 },
    Window { ms: u16, max: u8 },
}

fn dop() -> impl Strategy<Value = DOp> {
    prop_oneof![
        8 => (0u8..12, 0u8..3, 0u8..4).prop_map(|(id, kind, queue)| DOp::Send { id, kind, queue }),
        3 => (1u16..600).prop_map(|ms| DOp::Advance { ms }),
        1 => (0u16..3000, 0u8..8).prop_map(|(ms, max)| DOp::Window { ms, max }),
    ]
}

fn topics() -> Vec<Command> {
    [
        ("t", TopicKind::Normal),
        ("d", TopicKind::Delay),
        ("x", TopicKind::Transaction),
    ]
    .into_iter()
    .map(|(name, kind)| {
        Command::UpsertTopic(TopicConfig {
            name: name.into(),
            queues: 4,
            kind,
        })
    })
    .collect()
}

fn send(kind: Kind, id: u8, queue: u8, now: u64) -> Command {
    let base = StoredMessage {
        message_id: format!("id{id}"),
        ..msg(queue as u32, id as u64)
    };
    match kind {
        Kind::Plain => Command::Send(base),
        Kind::Delayed => Command::Schedule(StoredMessage {
            topic: "d".into(),
            kind: MessageKind::Delay,
            // Far enough that none fires during a case: the timers stay countable.
            delivery_ms: Some(now + 10_000_000),
            ..base
        }),
        Kind::Half => Command::Half(Half {
            check_after_ms: 6_000_000,
            message: StoredMessage {
                topic: "x".into(),
                kind: MessageKind::Transaction,
                ..base
            },
        }),
    }
}

/// The model: the window and, per (topic, id), the first answer and its time, oldest first.
#[derive(Default)]
struct Model {
    window: Option<(u64, u64)>,
    ids: VecDeque<((&'static str, u8), u64, Outcome)>,
}

impl Model {
    fn forget(&mut self, now: u64) {
        let Some((ms, max)) = self.window else {
            self.ids.clear();
            return;
        };
        while self
            .ids
            .front()
            .is_some_and(|(_, t, _)| *t < now.saturating_sub(ms))
            || self.ids.len() as u64 > max
        {
            self.ids.pop_front();
        }
    }
}

fn run(ops: &[DOp], seed: u64) {
    let mut h = Harness::new(1_000_000);
    h.twin = Some(Twin::new(seed));
    h.apply(&topics());
    let mut model = Model::default();
    let mut plain_stored = 0u64;
    let mut timers = 0usize;
    let mut halves = 0usize;
    for op in ops {
        match *op {
            DOp::Advance { ms } => {
                h.now += ms as u64;
                h.apply1(Command::Advance);
            }
            DOp::Window { ms, max } => {
                let w = DedupWindow {
                    window_ms: ms as u64,
                    max_ids: max as u64,
                };
                assert_eq!(h.apply1(Command::Dedup(w)), Outcome::Done);
                model.window = (ms > 0 && max > 0).then_some((ms as u64, max as u64));
                model.forget(h.now);
            }
            DOp::Send { id, kind, queue } => {
                let kind = [Kind::Plain, Kind::Delayed, Kind::Half][kind as usize];
                let topic = ["t", "d", "x"][kind as usize];
                model.forget(h.now);
                let got = h.apply1(send(kind, id, queue, h.now));
                let first = model
                    .ids
                    .iter()
                    .find(|(k, _, _)| *k == (topic, id))
                    .map(|(_, _, o)| o.clone());
                match first {
                    Some(o) => assert_eq!(got, o, "repeat of {topic}/id{id} inside the window"),
                    None => {
                        match (&got, kind) {
                            (Outcome::Sent { .. }, Kind::Plain) => plain_stored += 1,
                            (Outcome::Scheduled { .. }, Kind::Delayed) => timers += 1,
                            (Outcome::Half { .. }, Kind::Half) => halves += 1,
                            other => panic!("a new message answered {other:?}"),
                        }
                        if model.window.is_some() {
                            model.ids.push_back(((topic, id), h.now, got.clone()));
                            model.forget(h.now);
                        }
                    }
                }
                assert_eq!(h.state.dedup.len(), model.ids.len());
            }
        }
    }
    let stored: u64 = (0..4)
        .map(|q| h.state.queue("t", q).map_or(0, |cq| cq.end()))
        .sum();
    assert_eq!(stored, plain_stored, "plain messages stored");
    assert_eq!(h.state.timers.len(), timers, "timers pending");
    assert_eq!(h.state.txns.len(), halves, "transactions pending");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn repeats_inside_the_window_store_nothing(
        ops in proptest::collection::vec(dop(), 1..120),
        seed in any::<u64>(),
    ) {
        run(&ops, seed);
    }
}

/// Repeats of each kind, deterministic: the same receipt, one delivery, one timer, one
/// transaction; after the window the id is new again.
#[test]
fn a_resend_gets_the_first_receipt_and_one_delivery() {
    let mut h = Harness::new(1_000_000);
    h.apply(&topics());
    // No window yet: a log written before the marker stores every copy.
    let a = h.apply1(send(Kind::Plain, 1, 0, h.now));
    let b = h.apply1(send(Kind::Plain, 1, 0, h.now));
    assert_ne!(a, b);
    h.apply1(Command::Dedup(DedupWindow {
        window_ms: 1_000,
        max_ids: 100,
    }));
    let first = h.apply(&[
        send(Kind::Plain, 2, 1, h.now),
        send(Kind::Plain, 2, 3, h.now),
        send(Kind::Delayed, 2, 0, h.now),
        send(Kind::Half, 2, 0, h.now),
    ]);
    assert_eq!(first[0], first[1], "a repeat in the same entry");
    h.now += 999;
    let again = h.apply(&[
        send(Kind::Plain, 2, 2, h.now),
        send(Kind::Delayed, 2, 0, h.now),
        send(Kind::Half, 2, 0, h.now),
    ]);
    assert_eq!(
        again,
        vec![first[0].clone(), first[2].clone(), first[3].clone()]
    );
    assert_eq!(h.state.timers.len(), 1);
    assert_eq!(h.state.txns.len(), 1);
    assert_eq!(h.state.dedup.hits, 4);
    let stored: u64 = (0..4)
        .map(|q| h.state.queue("t", q).map_or(0, |cq| cq.end()))
        .sum();
    assert_eq!(stored, 3, "m1 twice (before the window), id2 once");
    h.now += 2;
    let late = h.apply1(send(Kind::Plain, 2, 2, h.now));
    assert_ne!(late, first[0], "after the window the id is new");
}
