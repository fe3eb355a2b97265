//! Validation of client input, with the v2 code each rule answers (rules as the Apache proxy
//! applies them). Bad input never reaches the log.

use std::collections::BTreeMap;

use raftmq_proto::names;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::Status;

use super::convert::ts_to_ms;
use super::status::status;
use crate::command::TagFilter;
use crate::filter::Wanted;
use crate::model::DLQ_PREFIX;
use crate::model::MessageKind;
use crate::model::QueueId;
use crate::model::StoredMessage;
use crate::model::tag_hash;

/// Properties RocketMQ reserves for itself (a producer may not set them).
const RESERVED_KEYS: &[&str] = &[
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "MSG_REGION",
    "TRACE_ON",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "POP_CK",
    "__STARTDELIVERTIME",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "SHARDING_KEY",
    "__transactionId__",
];
const MAX_PROPERTIES: usize = 128;
const MAX_PROPERTY_BYTES: usize = 16 << 10;
const MAX_GROUP_BYTES: usize = 64;
/// RocketMQ's message ids are 32-34 hex characters; leave room for other clients' formats.
const MAX_MESSAGE_ID_BYTES: usize = 128;
const MAX_TAG_BYTES: usize = 255;
const MAX_KEYS: usize = 32;
const MAX_KEY_BYTES: usize = 255;
const MAX_HOST_BYTES: usize = 255;
const MAX_TRACE_BYTES: usize = 4 << 10;

fn bad(code: Code, msg: impl Into<String>) -> Status {
    status(code, msg)
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The stored name of a resource's topic (`ns%name` in a namespace: [`names`]).
pub fn topic(r: Option<&pb::Resource>) -> Result<String, Status> {
    let r = r.ok_or_else(|| bad(Code::IllegalTopic, "topic is required"))?;
    names::topic(&r.resource_namespace, &r.name).map_err(|e| bad(Code::IllegalTopic, e.0))
}

/// The stored name of a resource's consumer group.
pub fn group(r: Option<&pb::Resource>) -> Result<String, Status> {
    let r = r.ok_or_else(|| bad(Code::IllegalConsumerGroup, "consumer group is required"))?;
    names::group(&r.resource_namespace, &r.name).map_err(|e| bad(Code::IllegalConsumerGroup, e.0))
}

/// Validates a message to send and converts it; a delivery time may be at most
/// `max_delay_ms` after `now_ms`.
pub fn message(
    m: &pb::Message,
    max_body: usize,
    now_ms: u64,
    max_delay_ms: u64,
) -> Result<StoredMessage, Status> {
    let topic = topic(m.topic.as_ref())?;
    if topic.starts_with(DLQ_PREFIX) {
        return Err(bad(
            Code::IllegalTopic,
            "dead-letter topics cannot be sent to",
        ));
    }
    let sys = m
        .system_properties
        .as_ref()
        .ok_or_else(|| bad(Code::BadRequest, "system properties are required"))?;
    check_identity(sys)?;
    if m.body.len() > max_body {
        return Err(bad(
            Code::MessageBodyTooLarge,
            format!(
                "body of {} bytes exceeds the limit of {max_body}",
                m.body.len()
            ),
        ));
    }
    check_tag_keys_group(sys)?;
    check_user_properties(m)?;
    let delivery_ms = sys.delivery_timestamp.as_ref().map(delivery_ms);
    let kind = message_kind(sys, delivery_ms)?;
    if let Some(d) = delivery_ms
        && d > now_ms.saturating_add(max_delay_ms)
    {
        return Err(bad(
            Code::IllegalDeliveryTime,
            format!(
                "delivery time is {} s ahead, more than the broker's limit of {} s \
                 (limits.max_delay_secs)",
                (d - now_ms) / 1000,
                max_delay_ms / 1000
            ),
        ));
    }
    Ok(StoredMessage {
        topic,
        queue: QueueId(sys.queue_id.max(0) as u32),
        message_id: sys.message_id.clone(),
        tag: sys.tag.clone(),
        keys: sys.keys.clone(),
        properties: m
            .user_properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        kind,
        message_group: sys.message_group.clone(),
        delivery_ms,
        born_ms: sys.born_timestamp.as_ref().map_or(now_ms, ts_to_ms),
        born_host: sys.born_host.clone(),
        body_encoding: sys.body_encoding,
        trace_context: sys.trace_context.clone(),
        body: m.body.to_vec(),
    })
}

/// Epoch seconds beyond which a delivery timestamp's `seconds` must be milliseconds (the year
/// 5138 in seconds; 1973 in milliseconds).
const SECONDS_CEILING: i64 = 100_000_000_000;

/// A delivery timestamp in milliseconds. The Python and Rust SDKs put the user's value in
/// `seconds` as it is, and the Python SDK documents it as milliseconds: a `seconds` too large
/// to be seconds is read as milliseconds, so both readings of the SDK's docs work.
fn delivery_ms(t: &prost_types::Timestamp) -> u64 {
    if t.seconds >= SECONDS_CEILING && t.nanos == 0 {
        t.seconds as u64
    } else {
        ts_to_ms(t)
    }
}

/// The message id, born host and trace context of a message.
fn check_identity(sys: &pb::SystemProperties) -> Result<(), Status> {
    if sys.message_id.trim().is_empty() {
        return Err(bad(Code::IllegalMessageId, "message id is required"));
    }
    if sys.message_id.len() > MAX_MESSAGE_ID_BYTES || has_control(&sys.message_id) {
        return Err(bad(
            Code::IllegalMessageId,
            format!(
                "message id must be at most {MAX_MESSAGE_ID_BYTES} bytes without control characters"
            ),
        ));
    }
    if sys.born_host.len() > MAX_HOST_BYTES {
        return Err(bad(
            Code::BadRequest,
            format!("born host is longer than {MAX_HOST_BYTES} bytes"),
        ));
    }
    if sys
        .trace_context
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TRACE_BYTES)
    {
        return Err(bad(
            Code::MessagePropertiesTooLarge,
            format!("trace context is longer than {MAX_TRACE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The tag, keys and message group of a message.
fn check_tag_keys_group(sys: &pb::SystemProperties) -> Result<(), Status> {
    if let Some(tag) = &sys.tag
        && (tag.trim().is_empty() || tag.contains('|') || has_control(tag))
    {
        return Err(bad(Code::IllegalMessageTag, format!("illegal tag {tag:?}")));
    }
    if let Some(tag) = &sys.tag
        && tag.len() > MAX_TAG_BYTES
    {
        return Err(bad(
            Code::IllegalMessageTag,
            format!("tag of {} bytes exceeds {MAX_TAG_BYTES}", tag.len()),
        ));
    }
    if sys.keys.len() > MAX_KEYS {
        return Err(bad(
            Code::IllegalMessageKey,
            format!("{} keys exceed the limit of {MAX_KEYS}", sys.keys.len()),
        ));
    }
    for k in &sys.keys {
        if k.trim().is_empty() || has_control(k) {
            return Err(bad(Code::IllegalMessageKey, format!("illegal key {k:?}")));
        }
        if k.len() > MAX_KEY_BYTES {
            return Err(bad(
                Code::IllegalMessageKey,
                format!("key of {} bytes exceeds {MAX_KEY_BYTES}", k.len()),
            ));
        }
    }
    if let Some(g) = &sys.message_group
        && (g.trim().is_empty() || g.len() >= MAX_GROUP_BYTES || has_control(g))
    {
        return Err(bad(
            Code::IllegalMessageGroup,
            format!("illegal message group {g:?}"),
        ));
    }
    Ok(())
}

/// The user properties of a message: no reserved keys, and bounded in number and size.
fn check_user_properties(m: &pb::Message) -> Result<(), Status> {
    let mut bytes = 0;
    for (k, v) in &m.user_properties {
        if k.is_empty() || RESERVED_KEYS.contains(&k.as_str()) {
            return Err(bad(
                Code::IllegalMessagePropertyKey,
                format!("property key {k:?} is reserved"),
            ));
        }
        bytes += k.len() + v.len();
    }
    if m.user_properties.len() > MAX_PROPERTIES || bytes > MAX_PROPERTY_BYTES {
        return Err(bad(
            Code::MessagePropertiesTooLarge,
            format!(
                "{} properties of {bytes} bytes exceed {MAX_PROPERTIES} / {MAX_PROPERTY_BYTES}",
                m.user_properties.len()
            ),
        ));
    }
    Ok(())
}

/// The message's kind: the declared type, or (unspecified) the one its message group or
/// delivery time implies; refused when its properties conflict with it.
fn message_kind(
    sys: &pb::SystemProperties,
    delivery_ms: Option<u64>,
) -> Result<MessageKind, Status> {
    let declared =
        pb::MessageType::try_from(sys.message_type).unwrap_or(pb::MessageType::Unspecified);
    if let Some(p) = sys.priority.filter(|p| *p < 0) {
        return Err(bad(Code::BadRequest, format!("priority {p} is below 0")));
    }
    let kind = match declared {
        pb::MessageType::Normal => MessageKind::Normal,
        pb::MessageType::Fifo => MessageKind::Fifo,
        pb::MessageType::Delay => MessageKind::Delay,
        pb::MessageType::Transaction => MessageKind::Transaction,
        pb::MessageType::Priority => match sys.priority {
            Some(p) => MessageKind::Priority(p as u32),
            None => {
                return Err(bad(
                    Code::MessagePropertyConflictWithType,
                    "a PRIORITY message needs a priority",
                ));
            }
        },
        pb::MessageType::Unspecified if let Some(p) = sys.priority => {
            MessageKind::Priority(p as u32)
        }
        pb::MessageType::Unspecified if sys.message_group.is_some() => MessageKind::Fifo,
        pb::MessageType::Unspecified if delivery_ms.is_some() => MessageKind::Delay,
        pb::MessageType::Unspecified => MessageKind::Normal,
        other => {
            return Err(bad(
                Code::Unsupported,
                format!("message type {other:?} is not supported"),
            ));
        }
    };
    let conflict = |why: &str| bad(Code::MessagePropertyConflictWithType, why.to_string());
    // RocketMQ's rule (and the Python client's): a priority orders a plain message only.
    if sys.priority.is_some()
        && (!matches!(kind, MessageKind::Priority(_))
            || sys.message_group.is_some()
            || delivery_ms.is_some())
    {
        return Err(conflict(
            "a priority goes only with a PRIORITY message, without a message group or a \
             delivery timestamp",
        ));
    }
    match kind {
        MessageKind::Fifo if sys.message_group.is_none() => {
            return Err(conflict("a FIFO message needs a message group"));
        }
        MessageKind::Delay if delivery_ms.is_none() => {
            return Err(conflict("a DELAY message needs a delivery timestamp"));
        }
        _ if sys.message_group.is_some() && delivery_ms.is_some() => {
            return Err(conflict(
                "a message cannot have both a message group and a delivery timestamp",
            ));
        }
        MessageKind::Normal if sys.message_group.is_some() || delivery_ms.is_some() => {
            return Err(conflict(
                "a NORMAL message cannot have a message group or a delivery timestamp",
            ));
        }
        // RocketMQ's rule too: a transaction's message is decided, not ordered or timed.
        MessageKind::Transaction if sys.message_group.is_some() || delivery_ms.is_some() => {
            return Err(conflict(
                "a TRANSACTION message cannot have a message group or a delivery timestamp",
            ));
        }
        _ => {}
    }
    Ok(kind)
}

/// The Raft group a request's queue names: its broker name is the group's name. A node
/// hosting a single group takes any name (clients sometimes send none).
pub fn raft_group(core: &crate::core::BrokerCore, mq: &pb::MessageQueue) -> Result<u64, Status> {
    if let Some(g) = mq.broker.as_ref().and_then(|b| core.group_by_name(&b.name)) {
        return Ok(g.id);
    }
    match core.groups().collect::<Vec<_>>().as_slice() {
        [only] => Ok(only.id),
        _ => Err(status(
            Code::BadRequest,
            format!(
                "unknown broker {:?}: use a queue from this topic's route",
                mq.broker.as_ref().map(|b| b.name.as_str())
            ),
        )),
    }
}

/// Parses a filter expression: tags, or a SQL92 expression (refused with the position of its
/// first error).
pub fn filter(
    f: Option<&pb::FilterExpression>,
    limits: &crate::limits::ClientLimits,
) -> Result<Wanted, pb::Status> {
    let Some(f) = f else {
        return Ok(Wanted::ALL);
    };
    if f.expression.len() > limits.max_filter_bytes {
        return Err(status(
            Code::IllegalFilterExpression,
            format!(
                "filter expression of {} bytes exceeds the limit of {}",
                f.expression.len(),
                limits.max_filter_bytes
            ),
        ));
    }
    match pb::FilterType::try_from(f.r#type).unwrap_or(pb::FilterType::Unspecified) {
        pb::FilterType::Tag | pb::FilterType::Unspecified => {
            let e = f.expression.trim();
            if e.is_empty() || e == "*" {
                return Ok(Wanted::ALL);
            }
            let tags: Vec<&str> = e.split("||").map(str::trim).collect();
            if tags.len() > limits.max_filter_tags {
                return Err(status(
                    Code::IllegalFilterExpression,
                    format!(
                        "{} tags in one filter exceed the limit of {}",
                        tags.len(),
                        limits.max_filter_tags
                    ),
                ));
            }
            if tags.iter().any(|t| t.is_empty()) {
                return Err(status(
                    Code::IllegalFilterExpression,
                    format!("illegal tag expression {e:?}"),
                ));
            }
            Ok(Wanted {
                tags: TagFilter::Tags(tags.into_iter().map(|t| tag_hash(Some(t))).collect()),
                sql: None,
            })
        }
        pb::FilterType::Sql => match crate::filter::sql92::Sql92::parse(&f.expression) {
            Err(e) => Err(status(
                Code::IllegalFilterExpression,
                format!("SQL92 filter: {e}"),
            )),
            Ok(_) => Ok(Wanted {
                tags: TagFilter::All,
                sql: Some(f.expression.clone()),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TopicKind;

    #[test]
    fn delivery_times_in_seconds_millis_or_millis_in_seconds_agree() {
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        // Java: seconds and nanos; Python/Rust: epoch seconds; Python as its docs say: ms.
        assert_eq!(
            delivery_ms(&ts(1_700_000_000, 250_000_000)),
            1_700_000_000_250
        );
        assert_eq!(delivery_ms(&ts(1_700_000_000, 0)), 1_700_000_000_000);
        assert_eq!(delivery_ms(&ts(1_700_000_000_250, 0)), 1_700_000_000_250);
        assert_eq!(delivery_ms(&ts(-5, 0)), 0);
    }

    /// A PRIORITY message carries its priority (0 and up); a priority with a message group, a
    /// delivery time or another type is a conflict, as in RocketMQ and the Python client.
    #[test]
    fn a_priority_goes_with_a_plain_priority_message_only() {
        let sys = |t: pb::MessageType, priority: Option<i32>| pb::SystemProperties {
            message_type: t as i32,
            priority,
            ..Default::default()
        };
        let kind = |s: &pb::SystemProperties, delay: Option<u64>| message_kind(s, delay);
        let t = pb::MessageType::Priority;
        assert_eq!(kind(&sys(t, Some(7)), None), Ok(MessageKind::Priority(7)));
        assert_eq!(
            kind(&sys(pb::MessageType::Unspecified, Some(0)), None),
            Ok(MessageKind::Priority(0))
        );
        let code = |r: Result<MessageKind, Status>| r.unwrap_err().code;
        let conflict = Code::MessagePropertyConflictWithType as i32;
        assert_eq!(code(kind(&sys(t, None), None)), conflict);
        assert_eq!(code(kind(&sys(t, Some(-1)), None)), Code::BadRequest as i32);
        assert_eq!(code(kind(&sys(t, Some(1)), Some(5))), conflict);
        assert_eq!(
            code(kind(&sys(pb::MessageType::Normal, Some(1)), None)),
            conflict
        );
        let mut fifo = sys(t, Some(1));
        fifo.message_group = Some("g".into());
        assert_eq!(code(kind(&fifo, None)), conflict);
        // The topic side: only a priority topic takes them; it takes plain ones too.
        assert!(TopicKind::Priority.accepts(MessageKind::Priority(3)));
        assert!(TopicKind::Priority.accepts(MessageKind::Normal));
        assert!(!TopicKind::Mixed.accepts(MessageKind::Priority(3)));
        assert!(!TopicKind::Fifo.accepts(MessageKind::Priority(0)));
        assert!(!TopicKind::Priority.accepts(MessageKind::Fifo));
    }

    #[test]
    fn a_malformed_sql92_filter_is_refused_with_its_position_and_a_valid_one_is_kept() {
        let limits = crate::limits::ClientLimits::default();
        let sql = |e: &str| pb::FilterExpression {
            r#type: pb::FilterType::Sql as i32,
            expression: e.to_string(),
        };
        let bad = filter(Some(&sql("a > 1 AND b = ")), &limits).unwrap_err();
        assert_eq!(bad.code, Code::IllegalFilterExpression as i32);
        assert!(bad.message.contains("line 1, column 15"), "{}", bad.message);
        let good = filter(Some(&sql("a > 1 AND b = 'x'")), &limits).unwrap();
        assert_eq!(good.sql.as_deref(), Some("a > 1 AND b = 'x'"));
        assert_eq!(good.tags, TagFilter::All);
    }
}
