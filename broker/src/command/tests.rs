//! Encoding round trips and limits of the log's commands and entries.

use std::collections::BTreeMap;

use super::*;
use crate::model::MessageKind;
use crate::model::QueueId;
use crate::model::QueueOffset;
use crate::model::TopicKind;

fn msg(i: u32) -> StoredMessage {
    StoredMessage {
        topic: "t".into(),
        queue: QueueId(i % 4),
        message_id: format!("id{i}"),
        tag: Some("TagA".into()),
        keys: vec!["k".into()],
        properties: BTreeMap::from([("a".to_string(), "b".to_string())]),
        kind: MessageKind::Normal,
        message_group: None,
        delivery_ms: None,
        born_ms: 7,
        born_host: "h".into(),
        body_encoding: 1,
        trace_context: None,
        body: vec![i as u8; 100],
    }
}

#[test]
fn entry_round_trip_and_message_slices() {
    let cmds = vec![
        Command::UpsertTopic(TopicConfig {
            name: "t".into(),
            queues: 4,
            kind: TopicKind::Normal,
        }),
        Command::Send(msg(1)),
        Command::Send(msg(2)),
        Command::Ack(Ack {
            group: "g".into(),
            topic: "t".into(),
            receipt: Receipt {
                queue: QueueId(1),
                offset: QueueOffset(9),
                seq: 3,
            },
        }),
        Command::CreateTopic(TopicConfig {
            name: "u".into(),
            queues: 2,
            kind: TopicKind::Mixed,
        }),
        Command::CreateGroup(crate::model::GroupConfig::with_defaults("g")),
        // Issue 16: priority topics and messages, resets.
        Command::UpsertTopic(TopicConfig {
            name: "p".into(),
            queues: 10,
            kind: TopicKind::Priority,
        }),
        Command::Send(StoredMessage {
            kind: MessageKind::Priority(7),
            ..msg(3)
        }),
        Command::Reset(Reset {
            group: "g".into(),
            topic: "t".into(),
            queue: None,
            to: ResetTo::Time(5),
        }),
        Command::Reset(Reset {
            group: "g".into(),
            topic: "t".into(),
            queue: Some(QueueId(2)),
            to: ResetTo::Offset(QueueOffset(4)),
        }),
    ];
    let bytes = encode_entry(1234, &cmds);
    let d = decode_entry(&bytes).unwrap();
    assert_eq!(d.now_ms, 1234);
    assert_eq!(
        d.commands
            .iter()
            .map(|l| l.command.clone().unwrap())
            .collect::<Vec<_>>(),
        cmds
    );
    let l = &d.commands[2];
    assert_eq!(decode_message(&bytes, l.pos, l.len).unwrap(), msg(2));
}

/// A fire's message is read straight out of the entry, after the key, like a send's.
#[test]
fn timer_commands_round_trip_and_a_fired_message_reads_in_place() {
    let key = TimerKey {
        due_ms: 1_700_000_000_123,
        log_index: 9,
        pos: 44,
    };
    let cmds = vec![
        Command::Schedule(msg(3)),
        Command::Fire(Fire {
            key,
            message: msg(4),
        }),
        Command::Recall(Recall {
            topic: "t".into(),
            message_id: "id3".into(),
            key,
        }),
        Command::DeadLetter(Ack {
            group: "g".into(),
            topic: "t".into(),
            receipt: Receipt {
                queue: QueueId(1),
                offset: QueueOffset(7),
                seq: 3,
            },
        }),
        Command::Nack(Ack {
            group: "g".into(),
            topic: "t".into(),
            receipt: Receipt {
                queue: QueueId(2),
                offset: QueueOffset(8),
                seq: 4,
            },
        }),
    ];
    let bytes = encode_entry(5, &cmds);
    let d = decode_entry(&bytes).unwrap();
    let back: Vec<Command> = d
        .commands
        .iter()
        .map(|l| l.command.clone().unwrap())
        .collect();
    assert_eq!(back, cmds);
    let f = &d.commands[1];
    assert_eq!(
        decode_message(&bytes, f.pos + FIRE_PREFIX, f.len - FIRE_PREFIX).unwrap(),
        msg(4)
    );
    assert!(decode_fire(&[0; 19]).is_err());
}

/// A half message and a commit's copy are read straight out of their entries, after their
/// prefixes, like a send's.
#[test]
fn transaction_commands_round_trip_and_their_messages_read_in_place() {
    let key = TxKey {
        log_index: 11,
        pos: 40,
    };
    let cmds = vec![
        Command::Half(Half {
            check_after_ms: 6_000,
            message: msg(5),
        }),
        Command::CommitTx(CommitTx {
            key,
            source: TxSource::Check,
            message: msg(5),
        }),
        Command::RollbackTx(RollbackTx {
            key,
            topic: "t".into(),
            message_id: "id5".into(),
            source: TxSource::Admin,
        }),
        Command::CheckTx(CheckTx {
            key,
            interval_ms: 60_000,
            max_checks: 15,
            after_max: AfterMax::Keep,
        }),
    ];
    let bytes = encode_entry(5, &cmds);
    let d = decode_entry(&bytes).unwrap();
    let back: Vec<Command> = d
        .commands
        .iter()
        .map(|l| l.command.clone().unwrap())
        .collect();
    assert_eq!(back, cmds);
    let h = &d.commands[0];
    assert_eq!(
        decode_message(&bytes, h.pos + HALF_PREFIX, h.len - HALF_PREFIX).unwrap(),
        msg(5)
    );
    let c = &d.commands[1];
    assert_eq!(
        decode_message(&bytes, c.pos + COMMIT_PREFIX, c.len - COMMIT_PREFIX).unwrap(),
        msg(5)
    );
    assert!(decode_half(&[0; 7]).is_err());
    assert!(decode_commit(&[0; 12]).is_err());
    let mut bad_source = encode_commit(&CommitTx {
        key,
        source: TxSource::Client,
        message: msg(5),
    });
    bad_source[12] = 9;
    assert!(decode_commit(&bad_source).is_err());
}

#[test]
fn a_receives_order_travels_in_its_op_code() {
    for (order, code) in [
        (PopOrder::OldestFirst, op::POP_OLDEST),
        (PopOrder::QueueByQueue, op::POP_BOUNDED),
    ] {
        let pop = Command::Pop(Pop {
            group: "g".into(),
            topic: "t".into(),
            queue: None,
            max: 32,
            invisible_ms: 30_000,
            filter: TagFilter::All,
            max_bytes: 1 << 20,
            order,
            sql: None,
            verdicts: None,
        });
        let (op, body) = pop.encode();
        assert_eq!(op, code);
        assert_eq!(Command::decode(op, &body).unwrap(), pop);
    }
}

#[test]
fn a_sql_receive_carries_its_verdicts_and_not_its_expression() {
    let mut run = Run::new(7);
    for i in 0..70 {
        run.push(i % 3 == 0);
    }
    assert_eq!(run.bits.len(), 2);
    assert_eq!(run.get(6), None);
    assert_eq!(run.get(7), Some(true));
    assert_eq!(run.get(8), Some(false));
    assert_eq!(run.get(7 + 69), Some(true));
    assert_eq!(run.get(7 + 70), None);
    let mut verdicts = Verdicts::default();
    verdicts.queues.insert(QueueId(2), run);
    let pop = Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: None,
        max: 32,
        invisible_ms: 30_000,
        filter: TagFilter::All,
        max_bytes: 1 << 20,
        order: PopOrder::OldestFirst,
        sql: Some("a > 1".into()),
        verdicts: Some(verdicts.clone()),
    };
    let (op, body) = Command::Pop(pop.clone()).encode();
    assert_eq!(op, op::POP_SQL);
    let Command::Pop(back) = Command::decode(op, &body).unwrap() else {
        panic!("not a receive");
    };
    // The expression was judged on the leader: replicas need only the verdicts.
    assert_eq!(
        back,
        Pop {
            sql: None,
            ..pop.clone()
        }
    );
    assert_eq!(back.wants_new(2, 7, 0), Some(true));
    assert_eq!(back.wants_new(2, 8, 0), Some(false));
    assert_eq!(back.wants_new(2, 77, 0), None);
    assert_eq!(back.wants_new(1, 7, 0), None);
    assert!(!back.reaches(1, 7));
    // Unjudged, a SQL92 receive takes nothing new; a receive without one, anything.
    let unjudged = Pop {
        verdicts: None,
        ..pop.clone()
    };
    assert_eq!(unjudged.wants_new(2, 7, 0), None);
    let plain = Pop {
        sql: None,
        verdicts: None,
        ..pop
    };
    assert_eq!(plain.wants_new(2, 7, 0), Some(true));
    // Verdicts of the wrong length are refused before they change anything.
    let mut bad = verdicts;
    bad.queues.get_mut(&QueueId(2)).unwrap().bits.pop();
    let bad = Pop {
        verdicts: Some(bad),
        ..plain
    };
    assert!(crate::limits::pop(&bad).is_err());
}

#[test]
fn a_messages_head_decodes_in_place_and_filters_as_the_whole_message() {
    use crate::filter::MessageProperties;
    use crate::filter::sql92::Sql92;

    let mut b = msg(2);
    b.tag = None;
    b.keys = vec!["k1".into(), "k2".into()];
    b.properties.insert("n".into(), "12".into());
    let bytes = encode_entry(1, &[Command::Send(msg(1)), Command::Send(b)]);
    let entry = decode_entry(&bytes).unwrap();
    let sqls = [
        "TAGS = 'TagA'",
        "TAGS IS NULL AND n > 10",
        "KEYS = 'k1 k2'",
        "KEYS = 'k' AND a = 'b'",
    ];
    for l in &entry.commands {
        let Ok(Command::Send(m)) = &l.command else {
            panic!("{:?}", l.command)
        };
        let head = decode_head(&bytes, l.pos, l.len).unwrap();
        assert_eq!(
            (head.topic, head.message_id, head.tag, head.keys.len()),
            (
                m.topic.as_str(),
                m.message_id.as_str(),
                m.tag.as_deref(),
                m.keys.len()
            )
        );
        for sql in sqls {
            let f = Sql92::parse(sql).unwrap();
            assert_eq!(
                f.matches(&MessageProperties::of_head(&head)),
                f.matches(&MessageProperties::new(m)),
                "{sql} on {}",
                m.message_id
            );
        }
    }
    assert!(decode_head(&bytes, 1 << 20, 10).is_err());
}

#[test]
fn unknown_op_and_damage_are_errors() {
    let mut bytes = encode_entry(1, &[Command::Send(msg(1))]);
    assert!(decode_entry(&bytes[..bytes.len() - 1]).is_err());
    bytes[13] = 200;
    assert!(
        decode_entry(&bytes)
            .unwrap_err()
            .contains("unknown op code")
    );
    assert!(decode_entry(&[9; 20]).unwrap_err().contains("version"));
}
