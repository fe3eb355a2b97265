//! Conversions between v2 protocol types and the broker's model: messages in (with
//! validation, see `validate`) and out (with the server-set system properties).

use std::time::Duration;

use md5::Digest as _;
use md5::Md5;
use raftmq_proto::names;
use raftmq_proto::v2 as pb;

use crate::model::MessageKind;
use crate::model::StoredMessage;
use crate::model::TopicKind;

pub use raftmq_proto::v2util::from_pb_duration as pb_duration;
pub use raftmq_proto::v2util::ms_to_ts;
pub use raftmq_proto::v2util::to_pb_duration;
pub use raftmq_proto::v2util::ts_to_ms;

/// The v2 message type of a kind.
pub fn kind_to_pb(k: MessageKind) -> pb::MessageType {
    match k {
        MessageKind::Normal => pb::MessageType::Normal,
        MessageKind::Fifo => pb::MessageType::Fifo,
        MessageKind::Delay => pb::MessageType::Delay,
        MessageKind::Transaction => pb::MessageType::Transaction,
        MessageKind::Priority(_) => pb::MessageType::Priority,
    }
}

/// The message types a topic accepts, for routes.
pub fn accepted_types(k: TopicKind) -> Vec<i32> {
    k.accepted()
        .into_iter()
        .map(|m| kind_to_pb(m) as i32)
        .collect()
}

/// Parses a topic kind name (admin).
pub fn parse_topic_kind(s: &str) -> Option<TopicKind> {
    Some(match s.to_ascii_lowercase().as_str() {
        "normal" => TopicKind::Normal,
        "fifo" => TopicKind::Fifo,
        "delay" => TopicKind::Delay,
        "transaction" => TopicKind::Transaction,
        "mixed" | "" => TopicKind::Mixed,
        "priority" => TopicKind::Priority,
        _ => return None,
    })
}

/// The name of a topic kind.
pub fn topic_kind_name(k: TopicKind) -> &'static str {
    match k {
        TopicKind::Normal => "normal",
        TopicKind::Fifo => "fifo",
        TopicKind::Delay => "delay",
        TopicKind::Transaction => "transaction",
        TopicKind::Mixed => "mixed",
        TopicKind::Priority => "priority",
    }
}

/// MD5 of the body as upper-case hex, as the Apache proxy sends it (clients verify it).
pub fn md5_upper_hex(body: &[u8]) -> String {
    Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Everything the server adds to a delivered message.
pub struct DeliveryStamp<'a> {
    /// Topic it is delivered from (a dead-letter topic for dead letters).
    pub topic: &'a str,
    /// Queue it is delivered from.
    pub queue: u32,
    /// Offset within that queue.
    pub offset: u64,
    /// Receipt handle.
    pub receipt_handle: String,
    /// Delivery attempt (1 first).
    pub attempt: u32,
    /// Invisible duration granted.
    pub invisible: Duration,
    /// When it was stored.
    pub store_ms: u64,
    /// This broker's address, for `store_host`.
    pub store_host: &'a str,
}

/// Builds the v2 message for a delivery.
pub fn to_pb_message(m: StoredMessage, s: DeliveryStamp<'_>) -> pb::Message {
    // The origin's name as the reader's namespace knows it (a group's dead letters are its
    // namespace's messages).
    let dead_letter_queue = (s.topic != m.topic).then(|| pb::DeadLetterQueue {
        topic: names::split(&m.topic).1,
        message_id: m.message_id.clone(),
    });
    let sys = pb::SystemProperties {
        tag: m.tag.clone(),
        keys: m.keys.clone(),
        message_id: m.message_id.clone(),
        body_digest: Some(pb::Digest {
            r#type: pb::DigestType::Md5 as i32,
            checksum: md5_upper_hex(&m.body),
        }),
        body_encoding: if m.body_encoding == pb::Encoding::Gzip as i32 {
            pb::Encoding::Gzip as i32
        } else {
            pb::Encoding::Identity as i32
        },
        message_type: kind_to_pb(m.kind) as i32,
        born_timestamp: Some(ms_to_ts(m.born_ms)),
        born_host: m.born_host.clone(),
        store_timestamp: Some(ms_to_ts(s.store_ms)),
        store_host: s.store_host.to_string(),
        delivery_timestamp: m.delivery_ms.map(ms_to_ts),
        receipt_handle: Some(s.receipt_handle),
        queue_id: s.queue as i32,
        queue_offset: Some(s.offset as i64),
        invisible_duration: Some(to_pb_duration(s.invisible)),
        delivery_attempt: Some(s.attempt as i32),
        message_group: m.message_group.clone(),
        trace_context: m.trace_context.clone(),
        orphaned_transaction_recovery_duration: None,
        dead_letter_queue,
        lite_topic: None,
        priority: match m.kind {
            MessageKind::Priority(p) => Some(p.min(i32::MAX as u32) as i32),
            _ => None,
        },
    };
    pb::Message {
        topic: Some(names::resource(s.topic)),
        user_properties: m.properties.into_iter().collect(),
        system_properties: Some(sys),
        body: m.body.into(),
    }
}
