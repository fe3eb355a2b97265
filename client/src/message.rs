//! Messages: what a producer builds ([`Message`]), what a send returns ([`SendReceipt`]) and
//! what a consumer receives ([`ReceivedMessage`]), with their v2 wire encoding.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2util;

use crate::error::ClientError;

/// The kind of a message, as the broker classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A plain message.
    Normal,
    /// A message with a message group: consumed in order within its group.
    Fifo,
    /// A message delivered at a set time.
    Delay,
    /// A half message of a transaction.
    Transaction,
    /// A message with a priority, for a priority topic.
    Priority,
}

impl MessageKind {
    pub(crate) fn to_pb(self) -> pb::MessageType {
        match self {
            MessageKind::Normal => pb::MessageType::Normal,
            MessageKind::Fifo => pb::MessageType::Fifo,
            MessageKind::Delay => pb::MessageType::Delay,
            MessageKind::Transaction => pb::MessageType::Transaction,
            MessageKind::Priority => pb::MessageType::Priority,
        }
    }
}

/// A message to send.
///
/// ```
/// use raftmq_client::Message;
/// let m = Message::new("orders", b"paid".to_vec())
///     .with_tag("payment")
///     .with_keys(["order-42"])
///     .with_property("region", "eu");
/// assert_eq!(m.topic(), "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    topic: String,
    body: Vec<u8>,
    tag: Option<String>,
    keys: Vec<String>,
    properties: BTreeMap<String, String>,
    message_group: Option<String>,
    delivery_time_ms: Option<u64>,
    priority: Option<u32>,
    message_id: Option<String>,
}

impl Message {
    /// A message for `topic` with `body`.
    pub fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            tag: None,
            keys: Vec::new(),
            properties: BTreeMap::new(),
            message_group: None,
            delivery_time_ms: None,
            priority: None,
            message_id: None,
        }
    }

    /// Sets the tag consumers filter on.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Sets the keys (business identifiers, for lookup).
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a user property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Makes this a FIFO message of `group`: messages of one group are stored in one queue in
    /// the order their sends complete and consumed in that order. Await each send of a group
    /// before the next to get send order (concurrent sends of one group have no order).
    pub fn with_message_group(mut self, group: impl Into<String>) -> Self {
        self.message_group = Some(group.into());
        self
    }

    /// Makes this a delayed message, delivered no earlier than `at`.
    pub fn with_delivery_time(mut self, at: SystemTime) -> Self {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.delivery_time_ms = Some(ms);
        self
    }

    /// Makes this a delayed message, delivered `delay` after now.
    pub fn with_delay(self, delay: Duration) -> Self {
        let at = UNIX_EPOCH + Duration::from_millis(crate::rt::now_ms()) + delay;
        self.with_delivery_time(at)
    }

    /// Makes this a priority message (0 the lowest), for a topic created with kind
    /// `priority`: a receive takes higher priorities first among the messages waiting.
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Uses `id` as the message id instead of a generated one (ids must be unique; a resend
    /// of the same message should reuse its id so consumers can deduplicate).
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The message group, for FIFO messages.
    pub fn message_group(&self) -> Option<&str> {
        self.message_group.as_deref()
    }

    /// The message id, if set with [`Message::with_message_id`] (sends assign one otherwise).
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// The kind this message is sent as (a transaction's messages are
    /// [`MessageKind::Transaction`] whatever this says).
    pub fn kind(&self) -> MessageKind {
        if self.message_group.is_some() {
            MessageKind::Fifo
        } else if self.delivery_time_ms.is_some() {
            MessageKind::Delay
        } else if self.priority.is_some() {
            MessageKind::Priority
        } else {
            MessageKind::Normal
        }
    }

    /// Checks what the broker would refuse anyway, before anything is sent.
    pub(crate) fn validate(&self, transactional: bool) -> Result<(), ClientError> {
        let bad = |m: String| Err(ClientError::InvalidMessage(m));
        let t = &self.topic;
        if !raftmq_proto::names::plain_ok(t) {
            return bad(format!(
                "topic {t:?} must be 1-127 characters of [A-Za-z0-9|_-]"
            ));
        }
        if let Some(tag) = &self.tag
            && (tag.trim().is_empty() || tag.contains('|') || tag.chars().any(char::is_control))
        {
            return bad(format!("tag {tag:?} must not be blank or contain '|'"));
        }
        if self
            .keys
            .iter()
            .any(|k| k.trim().is_empty() || k.chars().any(char::is_control))
        {
            return bad("keys must not be blank or contain control characters".into());
        }
        if let Some(g) = &self.message_group
            && (g.trim().is_empty() || g.len() >= 64 || g.chars().any(char::is_control))
        {
            return bad(format!(
                "message group {g:?} must be 1-63 bytes without control characters"
            ));
        }
        if self.message_group.is_some() && self.delivery_time_ms.is_some() {
            return bad("a message cannot have both a message group and a delivery time".into());
        }
        if self.priority.is_some()
            && (self.message_group.is_some() || self.delivery_time_ms.is_some())
        {
            return bad("a priority message cannot have a message group or a delivery time".into());
        }
        if transactional
            && (self.message_group.is_some()
                || self.delivery_time_ms.is_some()
                || self.priority.is_some())
        {
            return bad(
                "a transactional message cannot have a message group, a delivery time or a priority"
                    .into(),
            );
        }
        if let Some(id) = &self.message_id
            && id.trim().is_empty()
        {
            return bad("message id must not be blank".into());
        }
        Ok(())
    }

    /// The wire form, with `id` as the message id.
    pub(crate) fn to_pb(
        &self,
        namespace: &str,
        id: &str,
        queue_id: i32,
        transactional: bool,
    ) -> pb::Message {
        let kind = if transactional {
            MessageKind::Transaction
        } else {
            self.kind()
        };
        let now = crate::rt::now_ms();
        pb::Message {
            topic: Some(pb::Resource {
                resource_namespace: namespace.to_string(),
                name: self.topic.clone(),
            }),
            user_properties: self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
            system_properties: Some(pb::SystemProperties {
                tag: self.tag.clone(),
                keys: self.keys.clone(),
                message_id: id.to_string(),
                body_encoding: pb::Encoding::Identity as i32,
                message_type: kind.to_pb() as i32,
                born_timestamp: Some(v2util::ms_to_ts(now)),
                born_host: "raftmq-client".into(),
                delivery_timestamp: self.delivery_time_ms.map(v2util::ms_to_ts),
                queue_id,
                message_group: self.message_group.clone(),
                priority: self.priority.map(|p| p.min(i32::MAX as u32) as i32),
                ..Default::default()
            }),
            body: self.body.clone().into(),
        }
    }
}

/// Generates RocketMQ-style message ids: 34 upper-case hex characters, version `01`, a
/// random 6-byte host part fixed per process, the process id, seconds since 2021 and a
/// sequence number.
pub(crate) fn new_message_id() -> String {
    static HOST: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let host = *HOST.get_or_init(|| crate::rt::random_u64() & 0xffff_ffff_ffff);
    let pid = std::process::id() as u16;
    let secs = (crate::rt::now_ms() / 1000).saturating_sub(1_609_459_200) as u32;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("01{host:012X}{pid:04X}{secs:08X}{seq:08X}")
}

/// What a successful send returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The message id (consumers see the same id).
    pub message_id: String,
    /// The queue offset the broker stored the message at.
    pub offset: i64,
    /// The transaction id, for transactional messages.
    pub transaction_id: Option<String>,
    /// The address that acknowledged the send.
    pub endpoint: String,
    /// The broker (Raft group) name and queue id the message was stored in, when the server
    /// said: the broker picks the queue (as RocketMQ's proxy does), so this, not the queue the
    /// client asked for, is where [`SendReceipt::offset`] applies. RaftMQ brokers say it in a
    /// response header; other servers do not (`None`).
    pub stored_in: Option<(String, i32)>,
    /// For a message with a delivery time: the handle [`crate::Producer::recall`] takes to
    /// cancel it before it is delivered.
    pub recall_handle: Option<String>,
}

/// A message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message id the producer assigned.
    pub message_id: String,
    /// The topic.
    pub topic: String,
    /// The body (digest-checked).
    pub body: Vec<u8>,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The keys.
    pub keys: Vec<String>,
    /// User properties.
    pub properties: BTreeMap<String, String>,
    /// The message group, for FIFO messages.
    pub message_group: Option<String>,
    /// When the producer created it (ms since the epoch).
    pub born_ms: u64,
    /// When the broker stored it (ms since the epoch).
    pub store_ms: Option<u64>,
    /// The requested delivery time of a delayed message (ms since the epoch).
    pub delivery_ms: Option<u64>,
    /// The priority of a priority message.
    pub priority: Option<u32>,
    /// The broker (Raft group) the receive was addressed to. RaftMQ serves a non-FIFO receive
    /// from another group of the topic when the named one has nothing, so with several groups
    /// this names where the client asked, not necessarily where the message is stored (the
    /// receipt handle knows; acks work either way).
    pub broker: String,
    /// The queue id within that broker.
    pub queue_id: i32,
    /// The offset within that queue.
    pub queue_offset: Option<i64>,
    /// 1 on the first delivery, then 2, 3, ...
    pub delivery_attempt: u32,
    /// The receipt handle that acks it (replaced by each change of invisible duration).
    pub receipt_handle: String,
    /// The address the message was received from (acks go there first).
    pub(crate) endpoint: String,
}

impl ReceivedMessage {
    /// Decodes a delivered message and verifies its body digest.
    pub(crate) fn from_pb(
        m: pb::Message,
        broker: &str,
        endpoint: &str,
    ) -> Result<ReceivedMessage, ClientError> {
        let sp = m.system_properties.unwrap_or_default();
        let body = m.body.to_vec();
        if let Some(d) = &sp.body_digest {
            let ok = match pb::DigestType::try_from(d.r#type) {
                Ok(pb::DigestType::Md5) => {
                    let got = md5_hex(&body);
                    got.eq_ignore_ascii_case(&d.checksum)
                }
                // Other digest types are not checked.
                _ => true,
            };
            if !ok {
                return Err(ClientError::Corrupted {
                    message_id: sp.message_id,
                    detail: format!("body digest {} does not match", d.checksum),
                });
            }
        }
        Ok(ReceivedMessage {
            message_id: sp.message_id,
            topic: m.topic.map(|t| t.name).unwrap_or_default(),
            body,
            tag: sp.tag,
            keys: sp.keys,
            properties: m.user_properties.into_iter().collect(),
            message_group: sp.message_group,
            born_ms: sp.born_timestamp.as_ref().map_or(0, v2util::ts_to_ms),
            store_ms: sp.store_timestamp.as_ref().map(v2util::ts_to_ms),
            delivery_ms: sp.delivery_timestamp.as_ref().map(v2util::ts_to_ms),
            priority: sp.priority.and_then(|p| u32::try_from(p).ok()),
            broker: broker.to_string(),
            queue_id: sp.queue_id,
            queue_offset: sp.queue_offset,
            delivery_attempt: sp.delivery_attempt.unwrap_or(1).max(1) as u32,
            receipt_handle: sp.receipt_handle.unwrap_or_default(),
            endpoint: endpoint.to_string(),
        })
    }
}

fn md5_hex(body: &[u8]) -> String {
    use md5::Digest;
    let d = md5::Md5::digest(body);
    d.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_encoded() {
        let m = Message::new("t", b"x".to_vec())
            .with_tag("a")
            .with_keys(["k1", "k2"])
            .with_property("p", "v")
            .with_message_group("g");
        let p = m.to_pb("ns", "ID", 3, false);
        let sp = p.system_properties.unwrap();
        assert_eq!(sp.tag.as_deref(), Some("a"));
        assert_eq!(sp.keys, vec!["k1", "k2"]);
        assert_eq!(sp.message_group.as_deref(), Some("g"));
        assert_eq!(sp.message_type, pb::MessageType::Fifo as i32);
        assert_eq!(sp.queue_id, 3);
        assert_eq!(sp.message_id, "ID");
        assert_eq!(p.user_properties.get("p").map(String::as_str), Some("v"));
        assert_eq!(p.topic.unwrap().resource_namespace, "ns");

        let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let d = Message::new("t", vec![]).with_delivery_time(at);
        let sp = d.to_pb("", "ID", 0, false).system_properties.unwrap();
        assert_eq!(sp.message_type, pb::MessageType::Delay as i32);
        assert_eq!(
            sp.delivery_timestamp.map(|t| v2util::ts_to_ms(&t)),
            Some(1_800_000_000_123)
        );
        let t = Message::new("t", vec![]).to_pb("", "ID", 0, true);
        assert_eq!(
            t.system_properties.unwrap().message_type,
            pb::MessageType::Transaction as i32
        );
    }

    #[test]
    fn bad_messages_are_refused_locally() {
        assert!(Message::new("", vec![]).validate(false).is_err());
        assert!(Message::new("a b", vec![]).validate(false).is_err());
        assert!(
            Message::new("t", vec![])
                .with_tag("a|b")
                .validate(false)
                .is_err()
        );
        let both = Message::new("t", vec![])
            .with_message_group("g")
            .with_delay(Duration::from_secs(1));
        assert!(both.validate(false).is_err());
        let fifo_tx = Message::new("t", vec![]).with_message_group("g");
        assert!(fifo_tx.validate(true).is_err());
        assert!(Message::new("t", vec![]).validate(true).is_ok());
    }

    /// Runs `f` where the runtime shim works: inside a simulation under madsim (its
    /// randomness needs one), directly otherwise.
    fn in_runtime(f: impl FnOnce() + Send + 'static) {
        #[cfg(madsim)]
        madsim::runtime::Runtime::new().block_on(async move { f() });
        #[cfg(not(madsim))]
        f();
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        in_runtime(|| {
            let a = new_message_id();
            let b = new_message_id();
            assert_ne!(a, b);
            assert_eq!(a.len(), 34);
            assert!(a.starts_with("01") && a.chars().all(|c| c.is_ascii_hexdigit()));
        });
    }

    #[test]
    fn corrupted_bodies_are_detected() {
        let mut m = Message::new("t", b"hello".to_vec()).to_pb("", "ID", 0, false);
        let sp = m.system_properties.as_mut().unwrap();
        sp.body_digest = Some(pb::Digest {
            r#type: pb::DigestType::Md5 as i32,
            checksum: md5_hex(b"hello"),
        });
        assert!(ReceivedMessage::from_pb(m.clone(), "b", "e").is_ok());
        m.body = b"hellO".to_vec().into();
        let e = ReceivedMessage::from_pb(m, "b", "e").unwrap_err();
        assert!(matches!(e, ClientError::Corrupted { .. }));
    }
}
