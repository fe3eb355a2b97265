//! Time-budgeted fuzzing on stable Rust (proptest as the engine): every decoder and validator
//! that takes bytes from outside gets arbitrary and mutated-valid input and must answer with
//! a value or an error, never a panic or an abort. Targets: v2 request decoding + validation,
//! receipt handles, forwarded payloads, Raft RPC payloads, log frames and segment recovery,
//! broker config parsing.
//!
//! Each target runs for `FUZZ_SECS` seconds (default 6; CI runs the default, a soak sets
//! more), from seeds derived from `FUZZ_SEED` (default: fixed). A failure prints the minimal
//! input; add it to `regressions()` below so it is replayed on every run.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use broker::command::Command;
use broker::command::Pop;
use broker::command::TagFilter;
use broker::core::BrokerSettings;
use broker::forward::wire;
use broker::model::MessageKind;
use broker::model::QueueId;
use broker::model::StoredMessage;
use broker::service::validate;
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest::test_runner::RngAlgorithm;
use proptest::test_runner::TestCaseError;
use proptest::test_runner::TestRng;
use proptest::test_runner::TestRunner;
use prost::Message as _;
use raftmq_proto::v2 as pb;

/// Runs `test` on values of `strategy` until the target's time budget is spent.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let secs: u64 = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let base: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED);
    let started = Instant::now();
    let mut cases = 0u64;
    let mut round = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&base.to_le_bytes());
        seed[8..16].copy_from_slice(&round.to_le_bytes());
        seed[16..16 + name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 64,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
        );
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} (FUZZ_SEED={base}, round {round}): {e}");
        }
        cases += 64;
        round += 1;
    }
    println!("fuzz {name}: {cases} cases in {:?}", started.elapsed());
}

/// Arbitrary bytes, and valid encodings with a few bytes changed, cut or extended.
fn bytes_near(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let valid = Arc::new(valid);
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            0..valid.len(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            any::<usize>(),
            any::<bool>(),
        )
            .prop_map(move |(i, edits, cut, extend)| {
                let mut b = valid[i].clone();
                for (at, v) in edits {
                    if !b.is_empty() {
                        let n = b.len();
                        b[at % n] = v;
                    }
                }
                if extend {
                    b.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
                } else if !b.is_empty() {
                    b.truncate(cut % (b.len() + 1));
                }
                b
            }),
    ]
}

fn stored(i: u8) -> StoredMessage {
    StoredMessage {
        topic: "t".into(),
        queue: QueueId(i as u32),
        message_id: format!("id{i}"),
        tag: Some("tag".into()),
        keys: vec!["k1".into(), "k2".into()],
        properties: BTreeMap::from([("a".to_string(), "b".to_string())]),
        kind: MessageKind::Normal,
        message_group: None,
        delivery_ms: Some(5),
        born_ms: 7,
        born_host: "h".into(),
        body_encoding: 1,
        trace_context: None,
        body: vec![i; 40],
    }
}

fn v2_message() -> pb::Message {
    let mut m = pb::Message {
        topic: Some(pb::Resource {
            name: "Topic".into(),
            resource_namespace: String::new(),
        }),
        body: b"hello".to_vec().into(),
        ..Default::default()
    };
    m.user_properties.insert("k".into(), "v".into());
    m.system_properties = Some(pb::SystemProperties {
        message_id: "0123456789ABCDEF".into(),
        tag: Some("tag".into()),
        keys: vec!["key".into()],
        message_type: pb::MessageType::Normal as i32,
        body_encoding: pb::Encoding::Identity as i32,
        born_timestamp: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        }),
        ..Default::default()
    });
    m
}

#[test]
fn fuzz_v2_request_decoding_and_validation() {
    let send = pb::SendMessageRequest {
        messages: vec![v2_message(), v2_message()],
    }
    .encode_to_vec();
    let filter = pb::FilterExpression {
        r#type: pb::FilterType::Tag as i32,
        expression: "a||b||c".into(),
    };
    let receive = pb::ReceiveMessageRequest {
        filter_expression: Some(filter.clone()),
        batch_size: 16,
        ..Default::default()
    }
    .encode_to_vec();
    let settings = BrokerSettings::default();
    fuzz("v2-requests", bytes_near(vec![send, receive]), |b| {
        if let Ok(r) = pb::SendMessageRequest::decode(&b[..]) {
            for m in &r.messages {
                let _ =
                    validate::message(m, settings.limits.max_body_bytes, 1_700_000_000_000, 1_000);
                let _ = validate::topic(m.topic.as_ref());
            }
        }
        if let Ok(r) = pb::ReceiveMessageRequest::decode(&b[..]) {
            let _ = validate::filter(r.filter_expression.as_ref(), &settings.limits);
            let _ = validate::group(r.group.as_ref());
            if let Some(d) = &r.invisible_duration {
                let _ = raftmq_proto::v2util::from_pb_duration(d);
            }
        }
        if let Ok(t) = prost_types::Timestamp::decode(&b[..]) {
            let _ = raftmq_proto::v2util::ts_to_ms(&t);
        }
        Ok(())
    });
    // Structured: any strings and numbers in every field.
    let field = "\\PC{0,40}";
    let strategy = (
        field,
        field,
        proptest::option::of(field),
        proptest::collection::vec(field, 0..4),
        any::<i32>(),
        proptest::option::of((any::<i64>(), any::<i32>())),
        field,
    );
    fuzz(
        "v2-validate",
        strategy,
        |(topic, id, tag, keys, ty, ts, filter)| {
            let mut m = v2_message();
            m.topic.as_mut().unwrap().name = topic;
            let sys = m.system_properties.as_mut().unwrap();
            sys.message_id = id;
            sys.tag = tag;
            sys.keys = keys;
            sys.message_type = ty;
            sys.delivery_timestamp =
                ts.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos });
            let _ = validate::message(&m, 4 << 20, u64::MAX - 1, u64::MAX);
            let f = pb::FilterExpression {
                r#type: ty,
                expression: filter,
            };
            let _ = validate::filter(Some(&f), &BrokerSettings::default().limits);
            Ok(())
        },
    );
}

#[test]
fn fuzz_receipt_handles() {
    let valid: Vec<Vec<u8>> = (0..4u64)
        .map(|i| {
            broker::receipt::encode(
                i,
                &broker::command::Receipt {
                    queue: QueueId(i as u32),
                    offset: broker::model::QueueOffset(i * 1000),
                    seq: i * 7,
                },
            )
            .into_bytes()
        })
        .collect();
    fuzz("receipts", bytes_near(valid), |b| {
        if let Ok(s) = std::str::from_utf8(&b)
            && let Ok((g, r)) = broker::receipt::decode(s)
        {
            // Whatever decodes re-encodes to something that decodes the same.
            let again = broker::receipt::decode(&broker::receipt::encode(g, &r)).unwrap();
            prop_assert_eq!(again, (g, r));
        }
        Ok(())
    });
}

#[test]
fn fuzz_forwarded_payloads() {
    let pop = Pop {
        group: "g".into(),
        topic: "t".into(),
        queue: Some(QueueId(1)),
        max: 8,
        invisible_ms: 1000,
        filter: TagFilter::Tags([1, 2, 3].into()),
        max_bytes: 1 << 20,
        order: Default::default(),
        sql: None,
        verdicts: None,
    };
    let read = wire::Read::Pull {
        topic: "t".into(),
        queue: 0,
        offset: 5,
        batch: 32,
        filter: TagFilter::All,
        wait_ms: 100,
        max_bytes: 1 << 20,
    };
    let valid = vec![
        wire::enc(&Command::Send(stored(1))),
        wire::enc(&Command::Pop(pop.clone())),
        wire::enc(&pop),
        wire::enc(&read),
        wire::enc(&Ok::<_, wire::ForwardError>(wire::ReadAnswer::Offset(
            Some(3),
        ))),
        broker::command::encode_entry(9, &[Command::Send(stored(2)), Command::Pop(pop)]),
    ];
    fuzz("forward", bytes_near(valid), |b| {
        let _ = wire::dec::<Command>(&b);
        let _ = wire::dec::<Pop>(&b);
        let _ = wire::dec::<wire::Read>(&b);
        let _ = wire::dec::<Result<wire::ReadAnswer, wire::ForwardError>>(&b);
        let _ = wire::dec::<Result<wire::Popped, wire::ForwardError>>(&b);
        let _ = wire::dec::<Result<broker::state::Outcome, wire::ForwardError>>(&b);
        let _ = broker::app::decode_outcomes(&b);
        let _ = broker::command::decode_entry(&b);
        for op in 0..=13 {
            let _ = Command::decode(op, &b);
        }
        Ok(())
    });
}

#[test]
fn fuzz_raft_payloads() {
    use raft_store::types::Entry;
    use raft_store::types::EntryPayload;
    use raft_store::types::Request;
    use raft_store::types::TypeConfig;
    use raft_store::types::Vote;
    use raft_store::types::log_id;
    let entries: Vec<Entry> = (1..4)
        .map(|i| Entry {
            log_id: log_id(2, i),
            payload: EntryPayload::Normal(Request(vec![i as u8; 20])),
        })
        .collect();
    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(1, 0)),
        entries,
        leader_commit: Some(log_id(2, 1)),
    };
    let vote = openraft::raft::VoteRequest::<TypeConfig> {
        vote: Vote::new(3, 2),
        last_log_id: Some(log_id(2, 3)),
        leadership_transfer: false,
    };
    let std = bincode::config::standard();
    let valid = vec![
        bincode::serde::encode_to_vec(&append, std).unwrap(),
        bincode::serde::encode_to_vec(&vote, std).unwrap(),
    ];
    fuzz("raft", bytes_near(valid), |b| {
        let _ = raft_store::codec::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&b);
        let _ = raft_store::codec::decode::<openraft::raft::VoteRequest<TypeConfig>>(&b);
        let _ = raft_store::codec::decode::<openraft::raft::TransferLeaderRequest<TypeConfig>>(&b);
        let _ = raft_store::codec::decode::<(Vote, raft_store::types::SnapshotMeta)>(&b);
        let _ = raft_store::codec::decode::<
            Result<openraft::raft::AppendEntriesResponse<TypeConfig>, String>,
        >(&b);
        Ok(())
    });
}

#[test]
fn fuzz_log_frames_and_recovery() {
    use raft_store::disk::Disk;
    use raft_store::disk::SimDisk;
    use raft_store::log::LogConfig;
    use raft_store::log::LogStore;
    use raft_store::log::frame;
    use raft_store::types::Entry;
    use raft_store::types::EntryPayload;
    use raft_store::types::Request;
    use raft_store::types::log_id;

    let entry = |i: u64| Entry {
        log_id: log_id(1, i),
        payload: EntryPayload::Normal(Request(vec![i as u8; 100])),
    };
    let mut frames = Vec::new();
    for i in 1..6 {
        frame::encode_entry(&entry(i), &mut frames);
    }
    fuzz("frames", bytes_near(vec![frames.clone()]), |b| {
        let mut at = 0usize;
        while let Some(h) = b.get(at..).and_then(frame::parse_frame_header) {
            let len = h.frame_len() as usize;
            let Some(f) = b.get(at..at.saturating_add(len)) else {
                break;
            };
            if frame::frame_crc_ok(&h, f) {
                let _ = frame::decode_entry(&h, f);
            }
            at += len.max(1);
        }
        let _ = frame::parse_segment_header(&b);
        Ok(())
    });

    // Whole-log recovery: a log of small segments with bytes changed anywhere must open (with
    // a torn tail cut) or refuse with an error, never panic.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 1024,
        max_read_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let strategy = (
        proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..4),
        any::<bool>(),
    );
    fuzz("recovery", strategy, |(edits, truncate)| {
        rt.block_on(async {
            let disk = SimDisk::new(1);
            let d: Arc<dyn Disk> = Arc::new(disk.clone());
            {
                use openraft::storage::IOFlushed;
                use openraft::storage::RaftLogStorage;
                use openraft::type_config::TypeConfigExt;
                let (mut store, _) = LogStore::open(d.clone(), "/log", cfg.clone())
                    .await
                    .unwrap();
                let (tx, rx) = raft_store::types::TypeConfig::oneshot();
                store
                    .append((1..40).map(entry), IOFlushed::signal(tx))
                    .await
                    .unwrap();
                rx.await.unwrap().unwrap();
            }
            let mut segs: Vec<String> = disk
                .list(std::path::Path::new("/log"))
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(".seg"))
                .collect();
            segs.sort();
            for (file, at, v) in &edits {
                let path = std::path::Path::new("/log").join(&segs[file % segs.len()]);
                let f = disk.open(&path).unwrap();
                let len = f.len().unwrap();
                if len > 0 {
                    let pos = (*at as u64) % len;
                    if truncate {
                        f.set_len(pos).unwrap();
                    } else {
                        f.write_at(&[*v], pos).unwrap();
                    }
                    f.sync().await.unwrap();
                }
            }
            if let Ok((store, _)) = LogStore::open(d, "/log", cfg.clone()).await {
                let _ = store.read(..);
            }
        });
        Ok(())
    });
}

#[test]
fn fuzz_config_parsing() {
    let good = r#"
node_id = 1
data_dir = "/tmp/x"
listen = "127.0.0.1:8081"
raft_listen = "127.0.0.1:7001"
nameservers = ["127.0.0.1:9876"]
cluster_secret = "0123456789abcdef0123"

[limits]
max_long_polls = 100

[[nodes]]
id = 1
raft = "127.0.0.1:7001"
client = "127.0.0.1:8081"

[[groups]]
id = 1
members = [1]
"#;
    let valid = vec![good.as_bytes().to_vec()];
    fuzz("config", bytes_near(valid), |b| {
        let text = String::from_utf8_lossy(&b);
        if let Ok(t) = broker::config::BrokerToml::parse(&text) {
            let _ = t.into_config();
        }
        Ok(())
    });
}

/// Inputs fuzzing found, replayed on every run, with the probe that started issue 10.
#[test]
fn regressions() {
    // v2-validate: a delivery time near u64::MAX overflowed `now + one day` (checked builds).
    let mut m = v2_message();
    let sys = m.system_properties.as_mut().unwrap();
    sys.message_type = pb::MessageType::Delay as i32;
    sys.delivery_timestamp = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    let _ = validate::message(&m, 4 << 20, u64::MAX - 1, u64::MAX);

    let probe = [0x00, 0xFD, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00];
    assert!(wire::dec::<Command>(&probe).is_err());
    assert!(raft_store::codec::decode::<Vec<u8>>(&probe[1..]).is_err());
}
