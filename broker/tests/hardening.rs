//! Issue 10's findings at the state-machine level, each a test that failed (or panicked)
//! before the fix: a committed command can never make apply panic, decoding is bounded,
//! receives are bounded in bytes and in the entries they scan, renewals are batched.
//! Plus a property: arbitrary commands and arbitrary entry bytes, applied to a live state,
//! never panic and never break the state's invariants.

use std::collections::BTreeMap;

use broker::command::ChangeInvisible;
use broker::command::Command;
use broker::command::Pop;
use broker::command::Receipt;
use broker::command::TagFilter;
use broker::command::encode_entry;
use broker::limits;
use broker::model::GroupConfig;
use broker::model::MessageKind;
use broker::model::QueueId;
use broker::model::QueueOffset;
use broker::model::StoredMessage;
use broker::model::TopicConfig;
use broker::model::TopicKind;
use broker::model::tag_hash;
use broker::state::BrokerState;
use broker::state::Outcome;
use broker::state::Reject;
use proptest::prelude::*;

struct Live {
    state: BrokerState,
    index: u64,
}

impl Live {
    fn new() -> Self {
        Self {
            state: BrokerState::default(),
            index: 0,
        }
    }

    fn entry(&mut self, _now: u64, bytes: &[u8]) -> Result<Vec<Outcome>, String> {
        self.index += 1;
        let r = self.state.apply_entry(self.index, bytes);
        self.state.check_invariants();
        r
    }

    fn apply(&mut self, now: u64, cmds: &[Command]) -> Vec<Outcome> {
        self.entry(now, &encode_entry(now, cmds)).unwrap()
    }

    fn one(&mut self, now: u64, cmd: Command) -> Outcome {
        self.apply(now, &[cmd]).pop().unwrap()
    }
}

fn topic(name: &str, queues: u32) -> Command {
    Command::UpsertTopic(TopicConfig {
        name: name.into(),
        queues,
        kind: TopicKind::Mixed,
    })
}

fn msg(topic: &str, queue: u32, tag: &str, body: usize) -> StoredMessage {
    StoredMessage {
        topic: topic.into(),
        queue: QueueId(queue),
        message_id: "id".into(),
        tag: Some(tag.into()),
        keys: vec![],
        properties: BTreeMap::new(),
        kind: MessageKind::Normal,
        message_group: None,
        delivery_ms: None,
        born_ms: 0,
        born_host: "h".into(),
        body_encoding: 1,
        trace_context: None,
        body: vec![7; body],
    }
}

fn pop(topic: &str, max: u32, filter: TagFilter, max_bytes: u64) -> Command {
    Command::Pop(Pop {
        group: "g".into(),
        topic: topic.into(),
        queue: None,
        max,
        invisible_ms: 30_000,
        filter,
        max_bytes,
        order: Default::default(),
        sql: None,
        verdicts: None,
    })
}

fn popped(o: Outcome) -> Vec<broker::state::Delivery> {
    match o {
        Outcome::Popped { deliveries, .. } => deliveries,
        other => panic!("expected deliveries, got {other:?}"),
    }
}

/// Before: `CreateTopic{queues: 0}` went into the log through `Forward/Submit`, and the next
/// send divided by zero in apply on every replica, at every restart.
#[test]
fn a_topic_without_queues_is_refused_and_sends_after_it_do_not_panic() {
    let mut l = Live::new();
    let o = l.one(
        1,
        Command::CreateTopic(TopicConfig {
            name: "t".into(),
            queues: 0,
            kind: TopicKind::Mixed,
        }),
    );
    assert!(
        matches!(o, Outcome::Rejected(Reject::Invalid(ref w)) if w.contains("queues")),
        "{o:?}"
    );
    assert!(l.state.topics.is_empty());
    assert_eq!(
        l.one(2, Command::Send(msg("t", 3, "a", 1))),
        Outcome::Rejected(Reject::TopicNotFound)
    );
    // A state that already holds such a topic (restored from an older snapshot) refuses too.
    l.state.topics.insert(
        "old".into(),
        TopicConfig {
            name: "old".into(),
            queues: 0,
            kind: TopicKind::Mixed,
        },
    );
    let mut st = std::mem::take(&mut l.state);
    let o = st
        .apply_entry(
            99,
            &encode_entry(3, &[Command::Send(msg("old", 1, "a", 1))]),
        )
        .unwrap();
    assert_eq!(o, vec![Outcome::Rejected(Reject::QueueNotFound)]);
    let o = st
        .apply_entry(
            100,
            &encode_entry(3, &[pop("old", 1, TagFilter::All, 1 << 20)]),
        )
        .unwrap();
    assert_eq!(o, vec![Outcome::Rejected(Reject::QueueNotFound)]);
}

/// Huge invisibility durations used to overflow `now + invisible` (a panic in checked builds).
#[test]
fn out_of_range_durations_and_counts_are_refused_not_overflowed() {
    let mut l = Live::new();
    l.one(1, topic("t", 1));
    l.one(1, Command::Send(msg("t", 0, "a", 1)));
    let mut p = pop("t", 1, TagFilter::All, 1 << 20);
    if let Command::Pop(x) = &mut p {
        x.invisible_ms = u64::MAX;
    }
    assert!(matches!(l.one(2, p), Outcome::Rejected(Reject::Invalid(_))));
    assert!(matches!(
        l.one(2, pop("t", u32::MAX, TagFilter::All, 1 << 20)),
        Outcome::Rejected(Reject::Invalid(_))
    ));
    let d = popped(l.one(2, pop("t", 1, TagFilter::All, 1 << 20)));
    let change = |ms| {
        Command::ChangeInvisible(ChangeInvisible {
            group: "g".into(),
            topic: "t".into(),
            receipt: d[0].receipt,
            invisible_ms: ms,
        })
    };
    assert!(matches!(
        l.one(3, change(u64::MAX)),
        Outcome::Rejected(Reject::Invalid(_))
    ));
    assert!(matches!(l.one(3, change(1000)), Outcome::Changed { .. }));
    assert!(matches!(
        l.one(
            3,
            Command::UpsertGroup(GroupConfig {
                max_delivery_attempts: 0,
                ..GroupConfig::with_defaults("g")
            })
        ),
        Outcome::Rejected(Reject::Invalid(_))
    ));
}

/// A body of a known op code that does not decode is refused on every replica alike; the
/// commands around it still apply. (Before: the replica stopped at every restart.)
#[test]
fn an_undecodable_command_is_a_refused_no_op() {
    let mut l = Live::new();
    let mut bytes = encode_entry(5, &[topic("t", 2), Command::Send(msg("t", 0, "a", 3))]);
    // Corrupt the send's body (keep the framing): its first byte is the topic's length.
    let first_len = u32::from_le_bytes(bytes[14..18].try_into().unwrap()) as usize;
    let send_body = 13 + 5 + first_len + 5;
    bytes[send_body] = 0xFD;
    let o = l.entry(5, &bytes).unwrap();
    assert_eq!(o[0], Outcome::Done);
    assert!(
        matches!(&o[1], Outcome::Rejected(Reject::Invalid(w)) if w.contains("undecodable")),
        "{o:?}"
    );
    // An unknown op code still stops the replica (the log is newer than the binary), as an
    // error rather than a panic.
    let mut bytes = encode_entry(5, &[topic("u", 1)]);
    bytes[13] = 200;
    assert!(
        l.entry(6, &bytes)
            .unwrap_err()
            .contains("unknown op code 200")
    );
}

/// The ten-byte probe's payload: a bincode length of 2^50. Decoding must fail, not allocate.
#[test]
fn forged_lengths_do_not_allocate() {
    let probe = [0x00, 0xFD, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00];
    assert!(broker::command::decode_bounded::<Command>(&probe).is_err());
    assert!(broker::command::decode_bounded::<Pop>(&probe).is_err());
    for op in 1..=12 {
        assert!(Command::decode(op, &probe).is_err(), "op {op}");
    }
    assert!(broker::app::decode_outcomes(&probe).is_err());
}

/// Before: a pop whose filter matched nothing scanned the whole backlog under the apply lock.
#[test]
fn a_receive_scans_a_bounded_number_of_entries() {
    let mut l = Live::new();
    l.one(1, topic("t", 1));
    let n = limits::MAX_POP_SCAN as usize * 2 + 10;
    let sends: Vec<Command> = (0..n).map(|_| Command::Send(msg("t", 0, "A", 1))).collect();
    l.apply(1, &sends);
    l.one(1, Command::Send(msg("t", 0, "B", 1)));
    let only_b = TagFilter::Tags([tag_hash(Some("B"))].into());
    let mut receives = 0;
    let found = loop {
        receives += 1;
        let d = popped(l.one(2, pop("t", 8, only_b.clone(), 1 << 20)));
        let next = l.state.pops[&("g".to_string(), "t".to_string(), 0)].next;
        assert!(
            next <= receives * limits::MAX_POP_SCAN,
            "scanned {next} in {receives} receives"
        );
        if !d.is_empty() {
            break d;
        }
    };
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].receipt.offset, QueueOffset(n as u64));
    assert_eq!(receives, 3);
}

/// The bound holds per receive, not per message taken: a receive taking the oldest messages
/// across queues comes back to a queue once per message, and each return once started a fresh
/// allowance (found by review: a sparse filter could scan ~4M entries in one receive).
#[test]
fn a_receive_taking_many_sparse_matches_stays_within_its_scan_bound() {
    let mut l = Live::new();
    l.one(1, topic("t", 1));
    let n = limits::MAX_POP_SCAN as usize * 4;
    let sends: Vec<Command> = (0..n)
        .map(|i| Command::Send(msg("t", 0, if i % 100 == 99 { "B" } else { "A" }, 1)))
        .collect();
    l.apply(1, &sends);
    let only_b = TagFilter::Tags([tag_hash(Some("B"))].into());
    let d = popped(l.one(2, pop("t", 1024, only_b, 1 << 20)));
    let next = l.state.pops[&("g".to_string(), "t".to_string(), 0)].next;
    assert!(
        next <= limits::MAX_POP_SCAN,
        "scanned {next} entries in one receive"
    );
    assert_eq!(d.len() as u64, limits::MAX_POP_SCAN / 100);
}

/// Before: a receive of 32 large messages built a reply of any size (and a forwarded one
/// that could not be encoded had already committed the pop).
#[test]
fn a_receive_stops_at_its_byte_budget_but_takes_at_least_one_message() {
    let mut l = Live::new();
    l.one(1, topic("t", 1));
    let sends: Vec<Command> = (0..10)
        .map(|_| Command::Send(msg("t", 0, "A", 100_000)))
        .collect();
    l.apply(1, &sends);
    let d = popped(l.one(2, pop("t", 32, TagFilter::All, 350_000)));
    assert_eq!(d.len(), 3, "three bodies of ~100 kB fit in 350 kB");
    let d = popped(l.one(2, pop("t", 32, TagFilter::All, 10)));
    assert_eq!(
        d.len(),
        1,
        "one message always goes, however small the budget"
    );
    // Redeliveries count against the budget too.
    let d = popped(l.one(40_000, pop("t", 32, TagFilter::All, 250_000)));
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|x| x.attempt == 2));
}

/// Renewals travel many to a command; a stale receipt is reported, not fatal to the batch.
#[test]
fn renewals_are_batched_and_report_stale_receipts() {
    let mut l = Live::new();
    l.one(1, topic("t", 1));
    l.apply(
        1,
        &[
            Command::Send(msg("t", 0, "A", 1)),
            Command::Send(msg("t", 0, "A", 1)),
        ],
    );
    let d = popped(l.one(2, pop("t", 2, TagFilter::All, 1 << 20)));
    let renew = |r: Receipt| ChangeInvisible {
        group: "g".into(),
        topic: "t".into(),
        receipt: r,
        invisible_ms: 60_000,
    };
    let stale = Receipt {
        seq: 999,
        ..d[1].receipt
    };
    let o = l.one(
        10,
        Command::RenewMany(vec![renew(d[0].receipt), renew(stale)]),
    );
    assert_eq!(o, Outcome::Renewed(vec![Some(60_010), None]));
    let too_many = vec![renew(d[0].receipt); limits::MAX_RENEWALS + 1];
    assert!(matches!(
        l.one(11, Command::RenewMany(too_many)),
        Outcome::Rejected(Reject::Invalid(_))
    ));
}

/// Entries written by an older binary (op code 4, without a byte budget) still apply.
#[test]
fn old_receive_entries_still_apply() {
    #[derive(serde::Serialize)]
    struct PopV1 {
        group: String,
        topic: String,
        queue: Option<QueueId>,
        max: u32,
        invisible_ms: u64,
        filter: TagFilter,
    }
    let mut l = Live::new();
    l.one(1, topic("t", 1));
    l.one(1, Command::Send(msg("t", 0, "A", 1)));
    let body = bincode::serde::encode_to_vec(
        PopV1 {
            group: "g".into(),
            topic: "t".into(),
            queue: None,
            max: 4,
            invisible_ms: 1000,
            filter: TagFilter::Tags([tag_hash(Some("A"))].into()),
        },
        bincode::config::standard(),
    )
    .unwrap();
    let mut entry = vec![1u8];
    entry.extend_from_slice(&5u64.to_le_bytes());
    entry.extend_from_slice(&1u32.to_le_bytes());
    entry.push(4);
    entry.extend_from_slice(&(body.len() as u32).to_le_bytes());
    entry.extend_from_slice(&body);
    let o = l.entry(5, &entry).unwrap();
    assert_eq!(popped(o[0].clone()).len(), 1);
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("t".to_string()),
        Just("u".to_string()),
        Just("g".to_string()),
        Just(String::new()),
        "[a-z%]{0,4}",
        (250usize..300).prop_map(|n| "x".repeat(n)),
    ]
}

fn big_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100_000, Just(u64::MAX), any::<u64>()]
}

fn big_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..5, 1000u32..1100, Just(u32::MAX), any::<u32>()]
}

fn arb_receipt() -> impl Strategy<Value = Receipt> {
    (big_u32(), big_u64(), big_u64()).prop_map(|(q, o, s)| Receipt {
        queue: QueueId(q),
        offset: QueueOffset(o),
        seq: s,
    })
}

fn arb_change() -> impl Strategy<Value = ChangeInvisible> {
    (name(), name(), arb_receipt(), big_u64()).prop_map(|(group, topic, receipt, invisible_ms)| {
        ChangeInvisible {
            group,
            topic,
            receipt,
            invisible_ms,
        }
    })
}

fn arb_command() -> impl Strategy<Value = Command> {
    let filter = prop_oneof![
        Just(TagFilter::All),
        proptest::collection::btree_set(any::<u64>(), 0..4).prop_map(TagFilter::Tags),
        Just(TagFilter::Tags([tag_hash(Some("a"))].into())),
    ];
    prop_oneof![
        (name(), big_u32()).prop_map(|(n, q)| topic(&n, q)),
        (name(), big_u32()).prop_map(|(name, queues)| Command::CreateTopic(TopicConfig {
            name,
            queues,
            kind: TopicKind::Fifo,
        })),
        (name(), big_u32(), any::<bool>(), 0usize..70).prop_map(|(n, a, fifo, steps)| {
            Command::UpsertGroup(GroupConfig {
                name: n,
                max_delivery_attempts: a,
                fifo,
                retry_backoff_ms: vec![1; steps],
            })
        }),
        (
            name(),
            big_u32(),
            prop_oneof![Just("a"), Just("b")],
            0usize..3000
        )
            .prop_map(|(t, q, tag, b)| Command::Send(msg(&t, q, tag, b))),
        (
            name(),
            name(),
            proptest::option::of(big_u32()),
            big_u32(),
            big_u64(),
            filter,
            big_u64()
        )
            .prop_map(
                |(group, topic, queue, max, invisible_ms, filter, max_bytes)| {
                    Command::Pop(Pop {
                        group,
                        topic,
                        queue: queue.map(QueueId),
                        max,
                        invisible_ms,
                        filter,
                        max_bytes,
                        order: Default::default(),
                        sql: None,
                        verdicts: None,
                    })
                }
            ),
        (name(), name(), arb_receipt()).prop_map(|(group, topic, receipt)| Command::Ack(
            broker::command::Ack {
                group,
                topic,
                receipt
            }
        )),
        arb_change().prop_map(Command::ChangeInvisible),
        arb_change().prop_map(Command::Renew),
        proptest::collection::vec(arb_change(), 0..5).prop_map(Command::RenewMany),
        (name(), name(), big_u32(), big_u64(), any::<bool>()).prop_map(
            |(group, topic, q, o, reset)| {
                Command::CommitOffset(broker::command::CommitOffset {
                    group,
                    topic,
                    queue: QueueId(q),
                    offset: QueueOffset(o),
                    reset,
                })
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary commands (valid or not) on a live state, with the clock anywhere from 0 to
    /// u64::MAX: apply never panics and the invariants hold after every entry.
    #[test]
    fn arbitrary_commands_never_panic_apply(
        entries in proptest::collection::vec(
            (prop_oneof![0u64..1_000_000, Just(u64::MAX - 5)], proptest::collection::vec(arb_command(), 1..6)),
            1..24,
        )
    ) {
        let mut l = Live::new();
        l.apply(1, &[topic("t", 2), Command::Send(msg("t", 0, "a", 10)), Command::Send(msg("t", 1, "b", 10))]);
        for (now, cmds) in entries {
            let outcomes = l.apply(now, &cmds);
            prop_assert_eq!(outcomes.len(), cmds.len());
        }
        // A snapshot round trip of whatever state resulted.
        let bytes = bincode::serde::encode_to_vec(&l.state, bincode::config::standard()).unwrap();
        let (back, _): (BrokerState, _) = bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        prop_assert_eq!(back, l.state);
    }

    /// Arbitrary bytes as a committed entry: an error or outcomes, never a panic.
    #[test]
    fn arbitrary_entry_bytes_never_panic_apply(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<usize>(),
    ) {
        let mut l = Live::new();
        l.apply(1, &[topic("t", 2)]);
        let _ = l.entry(2, &bytes);
        // A valid entry with one byte changed.
        let mut e = encode_entry(3, &[Command::Send(msg("t", 0, "a", 5)), pop("t", 2, TagFilter::All, 100)]);
        let i = flip % e.len();
        e[i] ^= 0x5A;
        let _ = l.entry(4, &e);
    }
}
