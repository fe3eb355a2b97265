//! Orderly (FIFO) consumer groups tell message groups apart (issue 14, item 5): a message group
//! waits only for its own earlier message in flight, not for other groups sharing its queue.
//!
//! The model test runs random sends (three message groups and messages with none), FIFO
//! receives, acks, invisibility changes and clock advances, with a twin replica keeping its
//! consume queues in files through checkpoints and power losses, and checks after every
//! receive:
//! - `order`: a message is handed out only once every earlier message of its message group
//!   (every earlier message of its queue, if either has no group) is acknowledged or handed
//!   out before it in the same receive;
//! - `no-missed-wakeup`: a receive that hands something out was preceded by
//!   `BrokerState::has_visible` saying so (a long poll waiting on it would not sleep through);
//! - `no-spin`: when `has_visible` says yes, the receive hands something out or moves the
//!   group's receive state on (a long poll does not propose empty receives forever);
//! - and at the end, with every delivery acknowledged as it comes, everything is delivered
//!   (nothing is left behind among the messages gone past).

use std::collections::BTreeMap;

use broker::command::Ack;
use broker::command::ChangeInvisible;
use broker::command::Command;
use broker::command::Pop;
use broker::command::Receipt;
use broker::command::TagFilter;
use broker::limits::MAX_FIFO_SKIPPED;
use broker::model::GroupConfig;
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

const QUEUES: u32 = 2;
const GROUPS: [Option<&str>; 4] = [Some("A"), Some("B"), Some("C"), None];

fn grouped(queue: u32, n: u64, group: Option<&str>) -> StoredMessage {
    StoredMessage {
        message_group: group.map(str::to_string),
        kind: if group.is_some() {
            MessageKind::Fifo
        } else {
            MessageKind::Normal
        },
        ..msg(queue, n)
    }
}

fn setup(h: &mut Harness, queues: u32) {
    let mut g = GroupConfig::with_defaults("g");
    g.fifo = true;
    // The model does not follow dead letters: every message gets as many attempts as it needs.
    g.max_delivery_attempts = 1_000;
    h.apply(&[
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues,
            // Mixed: FIFO messages and messages with no group side by side.
            kind: TopicKind::Mixed,
        }),
        Command::UpsertGroup(g),
    ]);
}

/// The marker after which stored messages' groups count.
fn mark(h: &mut Harness) {
    assert_eq!(h.apply1(Command::FifoGroups), Outcome::Done);
}

fn pop(max: u32, invisible_ms: u64, queue: Option<u32>) -> Command {
    Command::Pop(Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: queue.map(broker::model::QueueId),
        max,
        invisible_ms,
        filter: TagFilter::All,
        max_bytes: u64::MAX,
        order: Default::default(),
        sql: None,
        verdicts: None,
    })
}

fn ack(r: Receipt) -> Command {
    Command::Ack(Ack {
        group: "g".into(),
        topic: "t".into(),
        receipt: r,
    })
}

/// (offset, attempt, message id) of each delivery.
fn got(o: &Outcome) -> Vec<(u64, u32, Receipt)> {
    let Outcome::Popped { deliveries, .. } = o else {
        panic!("{o:?}")
    };
    deliveries
        .iter()
        .map(|d| (d.receipt.offset.0, d.attempt, d.receipt))
        .collect()
}

fn offsets(o: &Outcome) -> Vec<u64> {
    got(o).iter().map(|d| d.0).collect()
}

/// Two message groups share a queue: while A's head is being processed, B goes on, and A's
/// next message waits for exactly that head. A message with no group waits for everything
/// before it, and nothing passes it.
#[test]
fn message_groups_wait_only_for_their_own_head() {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(3));
    setup(&mut h, 1);
    mark(&mut h);
    // Offsets: 0 A, 1 B, 2 A, 3 B, 4 C, 5 (none), 6 B.
    let order = [
        Some("A"),
        Some("B"),
        Some("A"),
        Some("B"),
        Some("C"),
        None,
        Some("B"),
    ];
    let sends: Vec<Command> = order
        .iter()
        .enumerate()
        .map(|(n, g)| Command::Send(grouped(0, n as u64, *g)))
        .collect();
    h.apply(&sends);
    let first = h.apply1(pop(1, 100, None));
    assert_eq!(offsets(&first), vec![0], "A's head");
    // A waits for offset 0; B and C go on, A's 2 is gone past; the message with no group
    // (5) waits for everything before it.
    let second = h.apply1(pop(10, 100, None));
    assert_eq!(offsets(&second), vec![1, 3, 4]);
    let pq = &h.state.pops[&("g".to_string(), "t".to_string(), 0)];
    assert_eq!(pq.skipped.iter().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!((pq.next, pq.ack_offset()), (5, 0));
    // Nothing is free now: a long poll waits rather than proposing empty receives.
    assert!(!h.state.has_visible("g", "t", None, h.now));
    assert_eq!(offsets(&h.apply1(pop(10, 100, None))), Vec::<u64>::new());
    // A's head is acknowledged: A's next comes out, though B's are still in flight.
    h.apply1(ack(got(&first)[0].2));
    assert!(h.state.has_visible("g", "t", None, h.now));
    let third = h.apply1(pop(10, 100, None));
    assert_eq!(offsets(&third), vec![2]);
    // Everything in flight expires: all come back in offset order, the message with no
    // group after them, and B's last after it.
    h.now += 150;
    let fourth = h.apply1(pop(10, 100, None));
    assert_eq!(
        got(&fourth).iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        vec![(1, 2), (2, 2), (3, 2), (4, 2), (5, 1), (6, 1)]
    );
    for d in got(&fourth) {
        h.apply1(ack(d.2));
    }
    let pq = &h.state.pops[&("g".to_string(), "t".to_string(), 0)];
    assert!(pq.skipped.is_empty() && pq.inflight.is_empty());
    assert_eq!(pq.ack_offset(), 7);
}

/// A group blocked longer than the queue's room to remember what it went past makes the queue
/// wait as a whole, as RocketMQ's orderly receive does, and nothing is lost once it moves.
#[test]
fn going_past_a_blocked_group_is_bounded() {
    let mut h = Harness::new(1_000);
    setup(&mut h, 1);
    mark(&mut h);
    let n = MAX_FIFO_SKIPPED as u64 + 20;
    // A's head, then A's messages only, then one B.
    let mut sends = vec![Command::Send(grouped(0, 0, Some("A")))];
    sends.extend((1..n).map(|i| Command::Send(grouped(0, i, Some("A")))));
    sends.push(Command::Send(grouped(0, n, Some("B"))));
    h.apply(&sends);
    let head = h.apply1(pop(1, 10_000, None));
    assert_eq!(offsets(&head), vec![0]);
    // Each receive goes past at most MAX_POP_SCAN; repeat until nothing moves.
    let mut rounds = 0;
    while h.state.has_visible("g", "t", None, h.now) {
        assert!(offsets(&h.apply1(pop(32, 10_000, None))).is_empty());
        rounds += 1;
        assert!(rounds < 10, "a receive moved nothing");
    }
    let pq = &h.state.pops[&("g".to_string(), "t".to_string(), 0)];
    assert_eq!(pq.skipped.len(), MAX_FIFO_SKIPPED);
    assert_eq!(pq.next, 1 + MAX_FIFO_SKIPPED as u64, "B waits behind A");
    h.apply1(ack(got(&head)[0].2));
    // A's messages in order, then everything else, B last.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let o = h.apply1(pop(32, 10_000, None));
        for d in got(&o) {
            seen.push(d.0);
            h.apply1(ack(d.2));
        }
        if seen.len() as u64 == n {
            break;
        }
    }
    assert_eq!(seen, (1..=n).collect::<Vec<_>>());
}

#[derive(Debug, Clone)]
enum Op {
    Send {
        queue: u32,
        group: usize,
    },
    Pop {
        max: u8,
        invisible: u16,
        one_queue: Option<u32>,
    },
    Ack {
        pick: u16,
    },
    Change {
        pick: u16,
        invisible: u16,
    },
    Advance {
        ms: u16,
    },
    /// The FIFO-groups marker (again: a no-op).
    Mark,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..QUEUES, 0..GROUPS.len()).prop_map(|(queue, group)| Op::Send { queue, group }),
        3 => (1u8..6, 1u16..400, proptest::option::of(0..QUEUES)).prop_map(|(max, invisible, one_queue)| Op::Pop { max, invisible, one_queue }),
        3 => any::<u16>().prop_map(|pick| Op::Ack { pick }),
        1 => (any::<u16>(), 0u16..400).prop_map(|(pick, invisible)| Op::Change { pick, invisible }),
        2 => (1u16..500).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Mark),
    ]
}

/// What the model knows of each message: its group and whether it is acknowledged.
struct Model {
    /// (queue, offset) -> (group as FIFO receives see it, acknowledged). A message stored
    /// before the marker has no group that counts.
    msgs: BTreeMap<(u32, u64), (Option<&'static str>, bool)>,
    /// The marker applied.
    marked: bool,
    /// Queues that held messages when it applied: their groups do not count (until offset
    /// 2^17, which the test never reaches).
    uncounted: std::collections::BTreeSet<u32>,
    /// Receipts handed out and not acknowledged: the latest per message.
    open: BTreeMap<(u32, u64), Receipt>,
}

impl Model {
    /// An open delivery, chosen by `pick`.
    fn pick(&self, pick: u16) -> Option<(u32, u64)> {
        let n = self.open.len().max(1);
        self.open.keys().nth(pick as usize % n).copied()
    }

    fn related(a: Option<&str>, b: Option<&str>) -> bool {
        a == b || a.is_none() || b.is_none()
    }

    /// `order`: each delivery's earlier related messages are acknowledged or handed out
    /// before it in the same receive.
    fn check_order(&self, delivered: &[(u64, u32, Receipt)]) {
        for (i, d) in delivered.iter().enumerate() {
            let q = d.2.queue.0;
            let (g, _) = self.msgs[&(q, d.0)];
            for ((_, off), (eg, acked)) in self.msgs.range((q, 0)..(q, d.0)) {
                let before = delivered[..i]
                    .iter()
                    .any(|x| x.2.queue.0 == q && x.0 == *off);
                assert!(
                    !Self::related(g, *eg) || *acked || before,
                    "order: offset {} of queue {q} ({g:?}) handed out while offset {off} ({eg:?}) is neither acknowledged nor before it: {delivered:?}",
                    d.0,
                );
            }
        }
    }
}

fn run(ops: Vec<Op>, seed: u64) {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(seed));
    setup(&mut h, QUEUES);
    let mut m = Model {
        msgs: BTreeMap::new(),
        marked: false,
        uncounted: Default::default(),
        open: BTreeMap::new(),
    };
    let mut n = 0u64;
    let do_pop = |h: &mut Harness, m: &mut Model, cmd: Command, queue: Option<u32>| {
        let visible = h.state.has_visible("g", "t", queue, h.now);
        let before = h.state.pops.clone();
        let o = h.apply1(cmd);
        let d = got(&o);
        assert!(visible || d.is_empty(), "no-missed-wakeup: {d:?}");
        assert!(
            !visible || !d.is_empty() || h.state.pops != before,
            "no-spin: has_visible said yes, the receive took nothing and moved nothing"
        );
        m.check_order(&d);
        for x in &d {
            m.open.insert((x.2.queue.0, x.0), x.2);
        }
        d
    };
    for op in ops {
        match op {
            Op::Send { queue, group } => {
                let o = h.apply1(Command::Send(grouped(queue, n, GROUPS[group])));
                n += 1;
                let Outcome::Sent { queue, offset } = o else {
                    panic!("{o:?}")
                };
                let g = GROUPS[group].filter(|_| m.marked && !m.uncounted.contains(&queue.0));
                m.msgs.insert((queue.0, offset.0), (g, false));
            }
            Op::Pop {
                max,
                invisible,
                one_queue,
            } => {
                do_pop(
                    &mut h,
                    &mut m,
                    pop(max as u32, invisible as u64, one_queue),
                    one_queue,
                );
            }
            Op::Ack { pick } => {
                let Some(k) = m.pick(pick) else {
                    continue;
                };
                let r = m.open[&k];
                // A receipt whose invisibility ran out may have been handed out again
                // (refused then), which the model learns from the answer.
                if h.apply1(ack(r)) == Outcome::Acked {
                    m.msgs.get_mut(&k).unwrap().1 = true;
                    m.open.remove(&k);
                }
            }
            Op::Change { pick, invisible } => {
                let Some(k) = m.pick(pick) else {
                    continue;
                };
                let o = h.apply1(Command::ChangeInvisible(ChangeInvisible {
                    group: "g".into(),
                    topic: "t".into(),
                    receipt: m.open[&k],
                    invisible_ms: invisible as u64,
                }));
                if let Outcome::Changed { receipt, .. } = o {
                    m.open.insert(k, receipt);
                }
            }
            Op::Advance { ms } => h.now += ms as u64,
            Op::Mark => {
                mark(&mut h);
                if !m.marked {
                    m.uncounted = m.msgs.keys().map(|(q, _)| *q).collect();
                }
                m.marked = true;
            }
        }
    }
    // Drain: everything expires, each receive's deliveries are acknowledged in order; all is
    // delivered, and has_visible says so while anything is left.
    for _ in 0..(n + 10) {
        if m.msgs.values().all(|(_, acked)| *acked) {
            break;
        }
        h.now += 1_000;
        assert!(
            h.state.has_visible("g", "t", None, h.now),
            "messages left, none visible"
        );
        for x in do_pop(&mut h, &mut m, pop(32, 400, None), None) {
            assert_eq!(h.apply1(ack(x.2)), Outcome::Acked);
            m.msgs.get_mut(&(x.2.queue.0, x.0)).unwrap().1 = true;
            m.open.remove(&(x.2.queue.0, x.0));
        }
    }
    assert!(
        m.msgs.values().all(|(_, acked)| *acked),
        "left behind: {:?}",
        m.msgs.iter().filter(|(_, v)| !v.1).collect::<Vec<_>>()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn fifo_receives_keep_each_message_group_in_order(
        ops in proptest::collection::vec(op(), 1..250),
        seed in any::<u64>(),
    ) {
        run(ops, seed);
    }
}

/// Messages stored before the FIFO-groups marker (by a build that may not have recorded their
/// group) wait for everything before them, as FIFO receives always did, and so does a queue
/// that held messages then, up to its next chunk boundary (an upgraded replica appends to the
/// older build's chunk, which has no room for group hashes); a queue that starts after the
/// marker tells groups apart from its first message.
#[test]
fn messages_from_before_the_marker_wait_for_the_whole_queue() {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(5));
    setup(&mut h, 2);
    // Queue 0: 0 A, 1 B before the marker; 2 A, 3 B after it. Queue 1: 0 A, 1 B after it.
    h.apply(&[
        Command::Send(grouped(0, 0, Some("A"))),
        Command::Send(grouped(0, 1, Some("B"))),
    ]);
    mark(&mut h);
    assert_eq!(
        h.state.grouped_from,
        BTreeMap::from([(("t".to_string(), 0), 1 << 17)])
    );
    h.apply(&[
        Command::Send(grouped(0, 2, Some("A"))),
        Command::Send(grouped(0, 3, Some("B"))),
        Command::Send(grouped(1, 4, Some("A"))),
        Command::Send(grouped(1, 5, Some("B"))),
    ]);
    let q0 = Some(0);
    let mut taken = Vec::new();
    for _ in 0..4 {
        let o = h.apply1(pop(1, 100, q0));
        assert_eq!(offsets(&o).len(), 1);
        // Each holds the whole queue until acknowledged.
        assert!(!h.state.has_visible("g", "t", q0, h.now));
        assert_eq!(offsets(&h.apply1(pop(10, 100, q0))), Vec::<u64>::new());
        taken.extend(offsets(&o));
        h.apply1(ack(got(&o)[0].2));
    }
    assert_eq!(taken, vec![0, 1, 2, 3]);
    // Queue 1 started after the marker: A's 0 in flight does not hold B's 1.
    let q1 = Some(1);
    assert_eq!(offsets(&h.apply1(pop(1, 100, q1))), vec![0]);
    assert_eq!(offsets(&h.apply1(pop(10, 100, q1))), vec![1]);
    // A second marker changes nothing.
    let from = h.state.groups_from;
    mark(&mut h);
    assert_eq!(h.state.groups_from, from);
}

/// A group made not orderly any more gets what its FIFO receives went past, and a long poll
/// does not spin on it. (Review of issue 14: those messages were never delivered.)
#[test]
fn a_group_no_longer_orderly_gets_what_it_went_past() {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(9));
    setup(&mut h, 1);
    mark(&mut h);
    h.apply(&[
        Command::Send(grouped(0, 0, Some("A"))),
        Command::Send(grouped(0, 1, Some("A"))),
        Command::Send(grouped(0, 2, Some("B"))),
    ]);
    assert_eq!(offsets(&h.apply1(pop(1, 10_000, None))), vec![0]);
    assert_eq!(offsets(&h.apply1(pop(10, 10_000, None))), vec![2]);
    let key = ("g".to_string(), "t".to_string(), 0);
    assert_eq!(h.state.pops[&key].skipped.len(), 1);
    let mut plain = GroupConfig::with_defaults("g");
    plain.fifo = false;
    h.apply1(Command::UpsertGroup(plain));
    assert!(h.state.has_visible("g", "t", None, h.now));
    assert_eq!(offsets(&h.apply1(pop(10, 10_000, None))), vec![1]);
    assert!(h.state.pops[&key].skipped.is_empty());
    assert!(!h.state.has_visible("g", "t", None, h.now));
}

/// Before the FIFO-groups marker an orderly group's receive from any queue is what older
/// builds, which may apply the same entry, make of it: the oldest messages first across the
/// queues, and a queue with a message in flight held whole. (Review of issue 14: the receive
/// that tells groups apart went queue by queue here, and replicas of two builds diverged.)
#[test]
fn before_the_marker_a_receive_is_what_older_builds_make_of_it() {
    let mut h = Harness::new(1_000);
    h.twin = Some(Twin::new(11));
    setup(&mut h, 2);
    // Log order: queue 0 offset 0, queue 1 offset 0, queue 0 offset 1.
    h.apply1(Command::Send(grouped(0, 0, Some("A"))));
    h.apply1(Command::Send(grouped(1, 1, Some("B"))));
    h.apply1(Command::Send(grouped(0, 2, Some("C"))));
    let o = h.apply1(pop(2, 100, None));
    let got: Vec<(u32, u64)> = got(&o).iter().map(|d| (d.2.queue.0, d.0)).collect();
    assert_eq!(got, vec![(0, 0), (1, 0)], "oldest first across the queues");
    // Both queues hold a message in flight: nothing more, though C is another group.
    assert!(!h.state.has_visible("g", "t", None, h.now));
    assert!(offsets(&h.apply1(pop(10, 100, None))).is_empty());
}
