//! Model test of scheduled (DELAY) messages in the broker's replicated state (issue 14):
//! random schedules, recalls, fires, receives and clock advances against a model. A timer
//! fires once, never early, a recalled one never, and the state (timers included) survives a
//! snapshot round trip and a file-backed twin replica's power losses. Slots are 500 ms wide,
//! so most timers wait in their slot's queue (files, in the twin) and are read in as the
//! clock advances.

use broker::command::Ack;
use broker::command::Command;
use broker::command::Pop;
use broker::command::Retain;
use broker::command::TagFilter;
use broker::model::MessageKind;
use broker::model::StoredMessage;
use broker::model::TopicConfig;
use broker::model::TopicKind;
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

/// Timer operations for [`timers_match_model`].
#[derive(Debug, Clone)]
enum TOp {
    /// Schedule a message `delay_ms` after now (≤ 0: due already, delivered at once).
    Schedule {
        delay_ms: i16,
    },
    Advance {
        ms: u16,
    },
    /// The leader fires what it sees due, plus a repeat and an early one of its choosing.
    Fire {
        extra: u16,
    },
    /// Recall a scheduled message (pending, fired or recalled already).
    Recall {
        pick: u16,
    },
    /// Receive and acknowledge everything visible.
    Drain,
    /// Retention up to `back` entries before the newest.
    Retain {
        back: u8,
    },
}

fn top() -> impl Strategy<Value = TOp> {
    prop_oneof![
        4 => (-200i16..3_000).prop_map(|delay_ms| TOp::Schedule { delay_ms }),
        3 => (1u16..800).prop_map(|ms| TOp::Advance { ms }),
        3 => any::<u16>().prop_map(|extra| TOp::Fire { extra }),
        1 => any::<u16>().prop_map(|pick| TOp::Recall { pick }),
        2 => Just(TOp::Drain),
        1 => (0u8..20).prop_map(|back| TOp::Retain { back }),
    ]
}

/// The leader's timer task: while the clock would load another slot, or a slot is loading
/// (a batch an entry), it proposes an `Advance` before it looks for due timers.
fn advance_as_the_leader_does(h: &mut Harness) {
    for _ in 0..100 {
        if !h.state.timers.needs_advance(h.now) {
            return;
        }
        assert_eq!(h.apply1(Command::Advance), Outcome::Done);
    }
    panic!("still loading after 100 advances");
}

/// What became of a scheduled message, in the model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum T {
    Pending,
    /// In its queue, stored by the entry at this log index (a fire, or the schedule itself
    /// when due already).
    Visible(u64),
    Recalled,
    Consumed,
}

/// Everything group `g` can receive from `t` now (up to 1,024), invisible for long.
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

/// Scheduled messages through fires (the leader's, repeated and premature ones), recalls,
/// receives, retention, snapshots and a file-backed twin with power losses: a timer fires
/// exactly once, never before its time, a recalled one never; retention keeps the entries of
/// pending timers; every message is delivered with its original id once all are due.
fn run_timers(ops: Vec<TOp>, seed: u64) {
    use broker::command::Fire;
    use broker::command::Recall;
    use broker::command::TimerKey;

    let mut h = Harness::new(1_000_000);
    // Slots of 500 ms: schedules up to 3 s ahead wait in slot queues (files, in the twin),
    // and the clock's advances read them in, two records an entry.
    h.state.timers = broker::state::timer::Timers::with_slot(500, 2);
    h.twin = Some(Twin::with_timer_slot(seed, Some((500, 2))));
    h.apply1(Command::UpsertTopic(TopicConfig {
        name: "t".into(),
        queues: QUEUES,
        kind: TopicKind::Mixed,
    }));
    // Every scheduled message: (its message, due time, key once scheduled, fate).
    let mut sched: Vec<(StoredMessage, u64, Option<TimerKey>, T)> = Vec::new();
    let delayed = |n: u64, due: u64| StoredMessage {
        kind: MessageKind::Delay,
        delivery_ms: Some(due),
        message_id: format!("d{n}"),
        ..msg((n % QUEUES as u64) as u32, n)
    };
    let fire = |h: &mut Harness, key: TimerKey, m: &StoredMessage| {
        h.apply1(Command::Fire(Fire {
            key,
            message: m.clone(),
        }))
    };
    for op in ops {
        match op {
            TOp::Schedule { delay_ms } => {
                let n = sched.len() as u64;
                let due = h.now.saturating_add_signed(delay_ms as i64);
                let m = delayed(n, due);
                match h.apply1(Command::Schedule(m.clone())) {
                    Outcome::Scheduled { key, .. } => {
                        assert!(due > h.now, "a message due already was scheduled");
                        assert_eq!((key.due_ms, key.log_index), (due, h.index));
                        sched.push((m, due, Some(key), T::Pending));
                    }
                    Outcome::Sent { .. } => {
                        assert!(due <= h.now, "a message due later was delivered at once");
                        sched.push((m, due, None, T::Visible(h.index)));
                    }
                    other => panic!("schedule: {other:?}"),
                }
            }
            TOp::Advance { ms } => h.now += ms as u64,
            TOp::Fire { extra } => {
                advance_as_the_leader_does(&mut h);
                let due: Vec<TimerKey> = h
                    .state
                    .timers
                    .due(h.now, usize::MAX)
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                // Exactly the model's pending messages due now.
                let mut want: Vec<TimerKey> = sched
                    .iter()
                    .filter(|s| s.3 == T::Pending && s.1 <= h.now)
                    .filter_map(|s| s.2)
                    .collect();
                want.sort();
                assert_eq!(due, want, "due timers");
                for key in due {
                    let i = sched.iter().position(|s| s.2 == Some(key)).unwrap();
                    let m = sched[i].0.clone();
                    assert!(matches!(fire(&mut h, key, &m), Outcome::Sent { .. }));
                    sched[i].3 = T::Visible(h.index);
                }
                // A repeat of any fired timer, or a premature fire of a pending one.
                if !sched.is_empty() {
                    let i = extra as usize % sched.len();
                    if let Some(key) = sched[i].2 {
                        let m = sched[i].0.clone();
                        let o = fire(&mut h, key, &m);
                        match sched[i].3 {
                            T::Pending => assert!(
                                matches!(o, Outcome::Rejected(Reject::Invalid(_))),
                                "early fire: {o:?}"
                            ),
                            // A recalled timer not due yet is refused as early first.
                            _ if sched[i].1 > h.now => assert!(
                                matches!(
                                    o,
                                    Outcome::Rejected(Reject::Invalid(_) | Reject::TimerNotPending)
                                ),
                                "{o:?}"
                            ),
                            _ => assert_eq!(o, Outcome::Rejected(Reject::TimerNotPending)),
                        }
                    }
                }
            }
            TOp::Recall { pick } => {
                if sched.is_empty() {
                    continue;
                }
                let i = pick as usize % sched.len();
                let Some(key) = sched[i].2 else { continue };
                let (topic, message_id) = (sched[i].0.topic.clone(), sched[i].0.message_id.clone());
                // A recall naming another message changes nothing.
                let wrong = h.apply1(Command::Recall(Recall {
                    topic: topic.clone(),
                    message_id: "other".into(),
                    key,
                }));
                assert_eq!(wrong, Outcome::Rejected(Reject::TimerNotPending));
                let o = h.apply1(Command::Recall(Recall {
                    topic,
                    message_id,
                    key,
                }));
                if sched[i].3 == T::Pending {
                    assert_eq!(o, Outcome::Done);
                    sched[i].3 = T::Recalled;
                } else {
                    assert_eq!(o, Outcome::Rejected(Reject::TimerNotPending));
                }
            }
            TOp::Drain => {
                let deliveries = receive_all(&mut h);
                let mut acks = Vec::new();
                for d in deliveries {
                    let (_, due, _, fate) = sched
                        .iter_mut()
                        .find(|s| s.3 == T::Visible(d.entry.log_index))
                        .expect("a delivery the model did not make visible");
                    assert!(d.entry.store_ms >= *due, "stored before its time");
                    *fate = T::Consumed;
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
            TOp::Retain { back } => {
                let upto = h.index.saturating_sub(back as u64);
                h.apply1(Command::Retain(Retain {
                    upto,
                    decided_ms: h.now,
                }));
                for s in &mut sched {
                    match (s.3, s.2) {
                        (T::Pending, Some(k)) => assert!(
                            k.log_index >= h.state.log_start,
                            "retention deleted a pending timer's entry"
                        ),
                        // Delivered messages age out like any other.
                        (T::Visible(i), _) if i < h.state.log_start => s.3 = T::Consumed,
                        _ => {}
                    }
                }
            }
        }
        let pending = sched.iter().filter(|s| s.3 == T::Pending).count();
        assert_eq!(h.state.timers.len(), pending, "pending timers");
        let snap = bincode::serde::encode_to_vec(&h.state, bincode::config::standard()).unwrap();
        let back: BrokerState =
            bincode::serde::decode_from_slice(&snap, bincode::config::standard())
                .unwrap()
                .0;
        assert_eq!(back, h.state);
    }
    // Liveness: once everything is due and fired, every message not recalled is delivered.
    h.now += 10_000;
    advance_as_the_leader_does(&mut h);
    let due: Vec<_> = h.state.timers.due(h.now, usize::MAX);
    for (key, _) in due {
        let i = sched.iter().position(|s| s.2 == Some(key)).unwrap();
        let m = sched[i].0.clone();
        assert!(matches!(fire(&mut h, key, &m), Outcome::Sent { .. }));
        sched[i].3 = T::Visible(h.index);
    }
    assert!(h.state.timers.is_empty());
    let visible = sched
        .iter()
        .filter(|s| matches!(s.3, T::Visible(_)))
        .count();
    let deliveries = receive_all(&mut h);
    assert_eq!(
        deliveries.len(),
        visible,
        "deliveries after everything fired"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn timers_match_model(ops in proptest::collection::vec(top(), 1..100), seed in any::<u64>()) {
        run_timers(ops, seed);
    }
}
