//! Hard bounds on what a command in the log may hold, and the check every command passes
//! twice: when it is proposed (so bad input never reaches the log) and again when it applies
//! (so an entry that slipped past, from an older binary or a bug, is a refused no-op on every
//! replica instead of a panic that would stop every replica at every restart).
//!
//! These are the log's structural limits and are fixed, because apply must decide the same way
//! on every replica and every version. The limits a client meets first (RocketMQ's, configurable
//! per node in [`crate::core::BrokerSettings`]) are validated to lie within them.

use serde::Deserialize;

use crate::command::ChangeInvisible;
use crate::command::Command;
use crate::command::Pop;
use crate::command::TagFilter;
use crate::model::GroupConfig;
use crate::model::StoredMessage;
use crate::model::TopicConfig;

/// Longest topic or consumer-group name in the log (the front end allows 127; dead-letter
/// topics add a prefix).
pub const MAX_NAME_BYTES: usize = 255;
/// Most queues a topic may have in one group.
pub const MAX_QUEUES: u32 = 1024;
/// Most delivery attempts a group may allow.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 10_000;
/// Most retry backoff steps a group may announce.
pub const MAX_BACKOFF_STEPS: usize = 64;
/// Most messages one receive may take.
pub const MAX_POP_MESSAGES: u32 = 1024;
/// Most tags a filter may name.
pub const MAX_FILTER_TAGS: usize = 1024;
/// Longest invisibility (or renewal) a command may ask for: 7 days.
pub const MAX_INVISIBLE_MS: u64 = 7 * 24 * 3600 * 1000;
/// The longest retry backoff step (a nack's invisibility): RocketMQ's longest default step
/// (2 h) times six. The admin refuses longer steps; a nack clamps to it whatever a stored
/// configuration holds.
pub const MAX_BACKOFF_MS: u64 = 12 * 3_600_000;
/// Largest message body in the log (the configurable front-end default is 4 MiB). With every
/// other field at its bound an entry stays well under the Raft transport's 64 MiB message
/// limit: an entry the transport cannot carry would stall replication of its group forever.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// Longest message id, tag, key, message group, born host (bytes).
pub const MAX_FIELD_BYTES: usize = 1024;
/// Most keys a message may carry.
pub const MAX_KEYS: usize = 1024;
/// Most user properties a message may carry, and their total size (keys plus values).
pub const MAX_PROPERTIES: usize = 1024;
/// See [`MAX_PROPERTIES`].
pub const MAX_PROPERTY_BYTES: usize = 1 << 20;
/// Longest trace context.
pub const MAX_TRACE_BYTES: usize = 64 << 10;
/// Most receipts one batched renewal may name.
pub const MAX_RENEWALS: usize = 4096;
/// Most consume-queue entries one receive looks at (matched or filtered out) per queue: a pop
/// whose filter matches nothing in a long backlog stops there, and the next receive goes on.
pub const MAX_POP_SCAN: u64 = 4096;

/// In a priority topic, a message that has waited this long (from its store time to a
/// receive's, both from the log) goes ahead of younger messages of any priority, oldest first:
/// no message starves behind a stream of higher-priority ones for longer than this plus the
/// time to deliver the older ones. Within it, a receive takes higher priorities first.
pub const PRIORITY_AGING_MS: u64 = 60_000;
/// Most messages the leader judges for one SQL92 receive, over all queues (the verdicts the
/// receive carries in the log are a bit each: 512 bytes at most). A subscription matching
/// few messages of a long backlog reads this many per receive and goes on in the next.
pub const MAX_SQL_JUDGED: u64 = 4096;
/// Most messages a FIFO group's receives may go past on one queue while their message groups
/// wait for an earlier message in flight (kept in the replicated state, 8 bytes or so each);
/// beyond, the queue waits as a whole, as RocketMQ's orderly receive does.
pub const MAX_FIFO_SKIPPED: usize = 1024;

fn name(what: &str, n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} name must have 1-{MAX_NAME_BYTES} bytes, has {}",
            n.len()
        ));
    }
    Ok(())
}

fn field(what: &str, v: &str) -> Result<(), String> {
    if v.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "{what} has {} bytes, more than {MAX_FIELD_BYTES}",
            v.len()
        ));
    }
    Ok(())
}

fn invisible(ms: u64) -> Result<(), String> {
    if ms > MAX_INVISIBLE_MS {
        return Err(format!(
            "invisible duration {ms} ms exceeds {MAX_INVISIBLE_MS} ms"
        ));
    }
    Ok(())
}

/// Checks a topic configuration.
pub fn topic(t: &TopicConfig) -> Result<(), String> {
    name("topic", &t.name)?;
    if t.queues == 0 || t.queues > MAX_QUEUES {
        return Err(format!(
            "topic {}: {} queues is outside 1..={MAX_QUEUES}",
            t.name, t.queues
        ));
    }
    Ok(())
}

/// Checks a consumer-group configuration.
pub fn group(g: &GroupConfig) -> Result<(), String> {
    name("consumer group", &g.name)?;
    if g.max_delivery_attempts == 0 || g.max_delivery_attempts > MAX_DELIVERY_ATTEMPTS {
        return Err(format!(
            "group {}: max delivery attempts {} is outside 1..={MAX_DELIVERY_ATTEMPTS}",
            g.name, g.max_delivery_attempts
        ));
    }
    if g.retry_backoff_ms.len() > MAX_BACKOFF_STEPS {
        return Err(format!(
            "group {}: {} backoff steps, more than {MAX_BACKOFF_STEPS}",
            g.name,
            g.retry_backoff_ms.len()
        ));
    }
    Ok(())
}

/// Checks a message to store.
pub fn message(m: &StoredMessage) -> Result<(), String> {
    name("topic", &m.topic)?;
    field("message id", &m.message_id)?;
    if let Some(t) = &m.tag {
        field("tag", t)?;
    }
    if let Some(g) = &m.message_group {
        field("message group", g)?;
    }
    field("born host", &m.born_host)?;
    if m.keys.len() > MAX_KEYS {
        return Err(format!("{} keys, more than {MAX_KEYS}", m.keys.len()));
    }
    for k in &m.keys {
        field("key", k)?;
    }
    let bytes: usize = m.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
    if m.properties.len() > MAX_PROPERTIES || bytes > MAX_PROPERTY_BYTES {
        return Err(format!(
            "{} properties of {bytes} bytes exceed {MAX_PROPERTIES} / {MAX_PROPERTY_BYTES}",
            m.properties.len()
        ));
    }
    if m.trace_context
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TRACE_BYTES)
    {
        return Err(format!("trace context longer than {MAX_TRACE_BYTES} bytes"));
    }
    if m.body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "body of {} bytes exceeds {MAX_BODY_BYTES}",
            m.body.len()
        ));
    }
    Ok(())
}

/// Checks a receive.
pub fn pop(p: &Pop) -> Result<(), String> {
    name("consumer group", &p.group)?;
    name("topic", &p.topic)?;
    if p.max == 0 || p.max > MAX_POP_MESSAGES {
        return Err(format!(
            "a receive of {} messages is outside 1..={MAX_POP_MESSAGES}",
            p.max
        ));
    }
    if p.max_bytes == 0 {
        return Err("a receive needs a byte budget".into());
    }
    invisible(p.invisible_ms)?;
    if let Some(v) = &p.verdicts {
        if v.judged() > MAX_SQL_JUDGED {
            return Err(format!(
                "a receive judging {} messages, more than {MAX_SQL_JUDGED}",
                v.judged()
            ));
        }
        if let Some((q, _)) = v
            .queues
            .iter()
            .find(|(_, r)| r.bits.len() != (r.len as usize).div_ceil(64))
        {
            return Err(format!("verdicts on queue {q} of the wrong length"));
        }
    }
    if let TagFilter::Tags(t) = &p.filter
        && t.len() > MAX_FILTER_TAGS
    {
        return Err(format!(
            "a filter of {} tags, more than {MAX_FILTER_TAGS}",
            t.len()
        ));
    }
    Ok(())
}

fn change(c: &ChangeInvisible) -> Result<(), String> {
    name("consumer group", &c.group)?;
    name("topic", &c.topic)?;
    invisible(c.invisible_ms)
}

/// Checks any command; `Err` says why it must not change the state.
pub fn check(c: &Command) -> Result<(), String> {
    match c {
        Command::UpsertTopic(t) | Command::CreateTopic(t) => topic(t),
        Command::UpsertGroup(g) | Command::CreateGroup(g) => group(g),
        Command::Send(m) => message(m),
        Command::Schedule(m) => {
            if m.delivery_ms.is_none() {
                return Err("a scheduled message without a delivery time".into());
            }
            message(m)
        }
        Command::Fire(f) => message(&f.message),
        Command::Half(h) => {
            if h.check_after_ms > MAX_TX_CHECK_MS {
                return Err(format!(
                    "first check-back after {} ms, more than {MAX_TX_CHECK_MS} ms",
                    h.check_after_ms
                ));
            }
            message(&h.message)
        }
        Command::CommitTx(c) => message(&c.message),
        Command::RollbackTx(r) => {
            name("topic", &r.topic)?;
            field("message id", &r.message_id)
        }
        Command::CheckTx(c) => {
            if !(1..=MAX_TX_CHECK_MS).contains(&c.interval_ms) || c.max_checks > MAX_TX_CHECKS {
                return Err(format!(
                    "check-backs every {} ms, at most {}: not within 1 ms..{MAX_TX_CHECK_MS} ms \
                     and {MAX_TX_CHECKS} checks",
                    c.interval_ms, c.max_checks
                ));
            }
            Ok(())
        }
        Command::Recall(r) => {
            name("topic", &r.topic)?;
            field("message id", &r.message_id)
        }
        Command::Pop(p) => pop(p),
        Command::Ack(a) | Command::DeadLetter(a) | Command::Nack(a) => {
            name("consumer group", &a.group)?;
            name("topic", &a.topic)
        }
        Command::ChangeInvisible(c) | Command::Renew(c) => change(c),
        Command::RenewMany(r) => {
            if r.len() > MAX_RENEWALS {
                return Err(format!(
                    "{} renewals in one command, more than {MAX_RENEWALS}",
                    r.len()
                ));
            }
            r.iter().try_for_each(change)
        }
        Command::CommitOffset(o) => {
            name("consumer group", &o.group)?;
            name("topic", &o.topic)
        }
        Command::Reset(r) => {
            name("consumer group", &r.group)?;
            name("topic", &r.topic)
        }
        // Any index is meaningful: apply clamps it below the entry's own.
        Command::Retain(_) | Command::Expire(_) | Command::FifoGroups | Command::Advance => Ok(()),
        Command::Dedup(d) => {
            if d.window_ms > MAX_DEDUP_WINDOW_MS || d.max_ids > MAX_DEDUP_IDS {
                return Err(format!(
                    "a deduplication window of {} ms and {} ids: more than {MAX_DEDUP_WINDOW_MS} \
                     ms or {MAX_DEDUP_IDS} ids",
                    d.window_ms, d.max_ids
                ));
            }
            Ok(())
        }
        Command::TopicRetention(t) => {
            name("topic", &t.topic)?;
            match t.max_age_ms {
                Some(ms) if !(MIN_TOPIC_AGE_MS..=MAX_TOPIC_AGE_MS).contains(&ms) => Err(format!(
                    "topic retention {ms} ms is not between {MIN_TOPIC_AGE_MS} ms and 100 years"
                )),
                _ => Ok(()),
            }
        }
    }
}

/// Longest wait before a transaction's first check-back, and between two (a day).
pub const MAX_TX_CHECK_MS: u64 = 24 * 3600 * 1000;

/// Most check-backs of one transaction.
pub const MAX_TX_CHECKS: u32 = 1_000;

/// Most undecided transactions a group holds (each about 150 bytes of state, in memory and in
/// every snapshot: 75 MB at the limit); a half message beyond is refused (TOO_MANY_REQUESTS)
/// until some are decided. Producers that die mid-transaction fill it only as fast as
/// check-backs fail to end them (RocketMQ's 15 checks a minute apart: a quarter of an hour).
pub const MAX_PENDING_TX: usize = 500_000;

/// Decided transactions remembered (about 60 bytes each), so that a second decision of one of
/// them is answered for what it is rather than as an unknown transaction.
pub const MAX_DECIDED_TX: usize = 100_000;

/// Longest deduplication window (a day).
pub const MAX_DEDUP_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Most message ids a group's deduplication window remembers (each about 100 bytes of state,
/// in memory and in every snapshot: 1 GB at the limit).
pub const MAX_DEDUP_IDS: u64 = 10_000_000;

/// Shortest retention age a topic may have (1 s).
pub const MIN_TOPIC_AGE_MS: u64 = 1_000;
/// Longest (100 years).
pub const MAX_TOPIC_AGE_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// What one client may ask of a node: RocketMQ's limits where it has them, configurable per
/// node (`[limits]` in the broker config, every key optional), each within the log's bounds
/// above.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Largest message body (bytes); RocketMQ's default is 4 MiB. MESSAGE_BODY_TOO_LARGE.
    pub max_body_bytes: usize,
    /// Bodies in one receive or pull reply stop here (bytes; at least one message goes).
    pub max_reply_bytes: usize,
    /// Longest filter expression (bytes). ILLEGAL_FILTER_EXPRESSION.
    pub max_filter_bytes: usize,
    /// Most tags in one tag filter. ILLEGAL_FILTER_EXPRESSION.
    pub max_filter_tags: usize,
    /// Most messages in one batch send. BAD_REQUEST.
    pub max_batch_messages: usize,
    /// Most body bytes in one batch send. MESSAGE_BODY_TOO_LARGE.
    pub max_batch_bytes: usize,
    /// Most receives and pulls waiting on the node at once. TOO_MANY_REQUESTS.
    pub max_long_polls: usize,
    /// Most Telemetry sessions on the node at once (RESOURCE_EXHAUSTED).
    pub max_telemetry_sessions: usize,
    /// Most clients remembered (the longest idle is forgotten first).
    pub max_clients: usize,
    /// Most open connections on the client listener (more are closed at accept).
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per client connection.
    pub max_streams_per_connection: u32,
    /// How far ahead a DELAY message's delivery time may be (seconds); RocketMQ's
    /// `timerMaxDelaySec` default is 3 days. ILLEGAL_DELIVERY_TIME beyond it.
    pub max_delay_secs: u64,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_reply_bytes: 16 << 20,
            max_filter_bytes: 16 << 10,
            max_filter_tags: 128,
            max_batch_messages: 1024,
            max_batch_bytes: 32 << 20,
            max_long_polls: 20_000,
            max_telemetry_sessions: 20_000,
            max_clients: 50_000,
            max_connections: 10_000,
            max_streams_per_connection: 1_000,
            max_delay_secs: 3 * 24 * 3600,
        }
    }
}

impl ClientLimits {
    /// Checks every value, naming the key (`limits.<key>`) of the first one out of range.
    pub fn validate(&self) -> Result<(), String> {
        let within = |key: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(format!("limits.{key}: {v} is outside {lo}..={hi}"))
            } else {
                Ok(())
            }
        };
        within("max_body_bytes", self.max_body_bytes, 1, MAX_BODY_BYTES)?;
        within("max_reply_bytes", self.max_reply_bytes, 1 << 10, 256 << 20)?;
        within("max_filter_bytes", self.max_filter_bytes, 16, 1 << 20)?;
        within("max_filter_tags", self.max_filter_tags, 1, MAX_FILTER_TAGS)?;
        within("max_batch_messages", self.max_batch_messages, 1, 100_000)?;
        within(
            "max_batch_bytes",
            self.max_batch_bytes,
            self.max_body_bytes,
            256 << 20,
        )?;
        within("max_long_polls", self.max_long_polls, 1, 1_000_000)?;
        within(
            "max_telemetry_sessions",
            self.max_telemetry_sessions,
            1,
            1_000_000,
        )?;
        within("max_clients", self.max_clients, 1, 10_000_000)?;
        within("max_connections", self.max_connections, 1, 1_000_000)?;
        within(
            "max_streams_per_connection",
            self.max_streams_per_connection as usize,
            1,
            100_000,
        )?;
        // Up to ten years: further ahead than that is a mistake, not a schedule.
        within(
            "max_delay_secs",
            self.max_delay_secs as usize,
            1,
            10 * 366 * 24 * 3600,
        )
    }
}
