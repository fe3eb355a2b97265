//! Pure helpers for the v2 protocol, shared by the broker and the nameserver: statuses,
//! timestamps and durations, the Telemetry settings answer, route entries, and the client id.

use std::time::Duration;

use crate::v2 as pb;
use crate::v2::Code;

/// A status with `code` and a readable message.
pub fn status(code: Code, message: impl Into<String>) -> pb::Status {
    pb::Status {
        code: code as i32,
        message: message.into(),
    }
}

/// The OK status.
pub fn ok() -> pb::Status {
    status(Code::Ok, "OK")
}

/// The common code of `entries`, or MULTIPLE_RESULTS.
pub fn combine<'a>(entries: impl Iterator<Item = &'a pb::Status>) -> pb::Status {
    let mut first: Option<&pb::Status> = None;
    for s in entries {
        match first {
            None => first = Some(s),
            Some(f) if f.code != s.code => {
                return status(Code::MultipleResults, "entries have different results");
            }
            Some(_) => {}
        }
    }
    first
        .cloned()
        .unwrap_or_else(|| status(Code::BadRequest, "no entries"))
}

/// Milliseconds since the epoch from a protobuf timestamp (clients send seconds or millis
/// precision; both land here).
pub fn ts_to_ms(t: &prost_types::Timestamp) -> u64 {
    // Saturating: a client may send any i64 (found by the issue-10 review: overflow).
    (t.seconds.max(0) as u64)
        .saturating_mul(1000)
        .saturating_add((t.nanos.clamp(0, 999_999_999) as u64) / 1_000_000)
}

/// The version tag that begins RaftMQ's recall handles: `rmq1:<Raft group id>:…` (the rest is
/// the broker's business: `broker::service::recall`).
pub const RECALL_HANDLE_V1: &str = "rmq1";

/// The Raft group a recall handle names, if it is one of RaftMQ's (a nameserver forwards the
/// recall to that group's members).
pub fn recall_handle_group(h: &str) -> Option<u64> {
    let mut parts = h.splitn(3, ':');
    if parts.next()? != RECALL_HANDLE_V1 {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The version tag that begins RaftMQ's transaction ids: `tx1:<Raft group id>:…` (the rest
/// is the broker's business: `broker::service::transaction`).
pub const TRANSACTION_ID_V1: &str = "tx1";

/// The Raft group a transaction id names, if it is one of RaftMQ's (a nameserver forwards
/// EndTransaction to that group's members).
pub fn transaction_group(id: &str) -> Option<u64> {
    let mut parts = id.splitn(3, ':');
    if parts.next()? != TRANSACTION_ID_V1 {
        return None;
    }
    parts.next()?.parse().ok()
}

/// A protobuf timestamp from milliseconds since the epoch.
pub fn ms_to_ts(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A duration from a protobuf duration (negative becomes zero).
pub fn from_pb_duration(d: &prost_types::Duration) -> Duration {
    Duration::from_secs(d.seconds.max(0) as u64)
        .saturating_add(Duration::from_nanos(d.nanos.clamp(0, 999_999_999) as u64))
}

/// A protobuf duration.
pub fn to_pb_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// The calling client's id (`x-mq-client-id`), or the status to answer without one.
/// Longest client id accepted.
pub const MAX_CLIENT_ID_BYTES: usize = 256;

/// The calling client's id (`x-mq-client-id`).
pub fn client_id(meta: &tonic::metadata::MetadataMap) -> Result<String, pb::Status> {
    match meta.get("x-mq-client-id").and_then(|v| v.to_str().ok()) {
        // Bounded: the id keys per-client state on every node it reaches.
        Some(id) if id.len() > MAX_CLIENT_ID_BYTES => Err(status(
            Code::BadRequest,
            format!("the x-mq-client-id header is longer than {MAX_CLIENT_ID_BYTES} bytes"),
        )),
        Some(id) if !id.trim().is_empty() => Ok(id.to_string()),
        _ => Err(status(
            Code::ClientIdRequired,
            "the x-mq-client-id header is required",
        )),
    }
}

/// A consumer group's retry policy, as Settings announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    /// Deliveries before dead-lettering.
    pub max_delivery_attempts: u32,
    /// Ordered consumption.
    pub fifo: bool,
    /// Retry backoff per attempt.
    pub retry_backoff: Vec<Duration>,
}

/// How many attempts a producer makes at one send: the backoff policy of the Settings reply a
/// producer (or a client of no role) gets, which the official Python and Node.js clients adopt
/// in place of their own. RocketMQ's proxy says 3. The Python client retries on the next queue
/// at once and does not set aside the node that failed, and each queue names one member
/// (`queue_endpoints`), so while a member is down about a third of its attempts land on it and
/// fail at once (connection refused). With 3 attempts, 794 sends failed (75,160 succeeded) over
/// three leader SIGKILLs; with 10, 14 failed (178,856 succeeded) over ten
/// (`CLIENT=python scripts/failover-bench.sh`, docs/benchmarks.md). Attempts refused at once
/// cost nothing; the price is the wait before a send fails when no member can commit it: up
/// to 10 × the client's request timeout (3 s by default for Python) instead of 3 ×.
pub const PRODUCER_MAX_ATTEMPTS: i32 = 10;

fn exponential(max_attempts: i32) -> pb::RetryPolicy {
    pb::RetryPolicy {
        max_attempts,
        strategy: Some(pb::retry_policy::Strategy::ExponentialBackoff(
            pb::ExponentialBackoff {
                initial: Some(to_pb_duration(Duration::from_millis(10))),
                max: Some(to_pb_duration(Duration::from_secs(1))),
                multiplier: 2.0,
            },
        )),
    }
}

/// The server's answer to a client's `Settings`: the client's values merged with the server's.
/// Java and Python clients fail to start without it (a producer needs an exponential backoff and
/// a positive body limit; a push consumer needs a backoff, batch size and long-polling timeout).
/// `policy` is the consumer group's (for subscriptions).
pub fn settings_reply(
    s: pb::Settings,
    policy: Option<GroupPolicy>,
    max_body_bytes: usize,
) -> pb::TelemetryCommand {
    let mut out = s.clone();
    out.metric = Some(pb::Metric {
        on: false,
        endpoints: None,
    });
    match s.pub_sub {
        Some(pb::settings::PubSub::Publishing(p)) => {
            out.backoff_policy = Some(exponential(PRODUCER_MAX_ATTEMPTS));
            out.pub_sub = Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: p.topics,
                max_body_size: max_body_bytes as i32,
                validate_message_type: true,
            }));
        }
        Some(pb::settings::PubSub::Subscription(sub)) => {
            let policy = policy.unwrap_or(GroupPolicy {
                max_delivery_attempts: 17,
                fifo: false,
                retry_backoff: vec![Duration::from_secs(1)],
            });
            out.backoff_policy = Some(pb::RetryPolicy {
                max_attempts: policy.max_delivery_attempts as i32,
                strategy: Some(pb::retry_policy::Strategy::CustomizedBackoff(
                    pb::CustomizedBackoff {
                        next: policy
                            .retry_backoff
                            .iter()
                            .map(|d| to_pb_duration(*d))
                            .collect(),
                    },
                )),
            });
            out.pub_sub = Some(pb::settings::PubSub::Subscription(pb::Subscription {
                group: sub.group,
                subscriptions: sub.subscriptions,
                fifo: Some(policy.fifo),
                receive_batch_size: Some(32),
                long_polling_timeout: Some(to_pb_duration(Duration::from_secs(20))),
            }));
        }
        None => out.backoff_policy = Some(exponential(PRODUCER_MAX_ATTEMPTS)),
    }
    pb::TelemetryCommand {
        status: Some(ok()),
        command: Some(pb::telemetry_command::Command::Settings(out)),
    }
}

/// `host:port` strings as v2 endpoints (IPv4, IPv6 or a domain name, from the first host).
pub fn endpoints(addrs: &[String]) -> pb::Endpoints {
    let addresses: Vec<pb::Address> = addrs
        .iter()
        .filter_map(|a| {
            let (host, port) = a.rsplit_once(':')?;
            Some(pb::Address {
                host: host.trim_matches(['[', ']']).to_string(),
                port: port.parse().ok()?,
            })
        })
        .collect();
    let scheme = match addresses.first().map(|a| a.host.as_str()) {
        Some(h) if h.parse::<std::net::Ipv4Addr>().is_ok() => pb::AddressScheme::IPv4,
        Some(h) if h.parse::<std::net::Ipv6Addr>().is_ok() => pb::AddressScheme::IPv6,
        _ => pb::AddressScheme::DomainName,
    };
    // A domain name may carry only one address (the Python and Rust clients reject more).
    let addresses = if scheme == pb::AddressScheme::DomainName {
        addresses.into_iter().take(1).collect()
    } else {
        addresses
    };
    pb::Endpoints {
        scheme: scheme as i32,
        addresses,
    }
}

/// A route entry: queue `id` of `topic` (its stored name: the entry names its namespace) on
/// broker `broker` at `endpoints`.
pub fn message_queue(
    topic: &str,
    id: i32,
    broker: &str,
    endpoints: pb::Endpoints,
    accept: Vec<i32>,
) -> pb::MessageQueue {
    pb::MessageQueue {
        topic: Some(crate::names::resource(topic)),
        id,
        permission: pb::Permission::ReadWrite as i32,
        broker: Some(pb::Broker {
            name: broker.to_string(),
            id: 0,
            endpoints: Some(endpoints),
        }),
        accept_message_types: accept,
    }
}

/// The v2 message types a topic kind name accepts.
pub fn accepted_types(kind: &str) -> Vec<i32> {
    use pb::MessageType as T;
    match kind {
        "normal" => vec![T::Normal as i32],
        "fifo" => vec![T::Fifo as i32],
        "delay" => vec![T::Delay as i32],
        "transaction" => vec![T::Transaction as i32],
        "priority" => vec![T::Normal as i32, T::Priority as i32],
        _ => vec![
            T::Normal as i32,
            T::Fifo as i32,
            T::Delay as i32,
            T::Transaction as i32,
        ],
    }
}

/// True if the request comes from the official Rust client (`x-mq-language: RUST`).
pub fn is_rust_client(meta: &tonic::metadata::MetadataMap) -> bool {
    meta.get("x-mq-language")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|l| l.eq_ignore_ascii_case("rust"))
}

/// True if the request comes from the official Rust client 5.x in particular, not
/// raftmq-client (which also says `RUST`, and sends `x-mq-protocol: v2` where the official one
/// sends `x-mq-protocol-version`). That client has no handler for a Settings reply on its
/// Telemetry stream and logs each one at ERROR ("receive telemetry command but there is no
/// handler"); it handles only transaction checks there.
pub fn is_official_rust_client(meta: &tonic::metadata::MetadataMap) -> bool {
    is_rust_client(meta) && meta.get("x-mq-protocol").is_none()
}

/// The endpoints a route gives one queue of a group whose members are `members`.
///
/// Most clients (Python, Java) put every address of an `Endpoints` into one gRPC target, whose
/// `:authority` an HTTP/2 server rejects, and pick one address anyway; so each queue gets one
/// member, spread over the members by `spread` (the queue id, or a per-client key), and a dead
/// node costs such a client a retry on its next queue. The Rust 5.0.0 client balances over all
/// addresses and never refreshes routes, so it gets every member (`all`).
pub fn queue_endpoints(members: &[String], spread: u64, all: bool) -> Endpoints {
    if all || members.len() <= 1 {
        return endpoints(members);
    }
    endpoints(std::slice::from_ref(
        &members[(spread % members.len() as u64) as usize],
    ))
}

use crate::v2::Endpoints;

/// True if `status` says a gRPC call failed before its request left this process, because no
/// connection could be made: retrying elsewhere cannot duplicate anything. A reset or broken
/// connection is not such a failure (the request may have been delivered).
///
/// Real tonic reports connect failures as UNAVAILABLE "tcp connect error" / "error trying to
/// connect" / "... refused"; madsim's tonic reports a failed connect or handshake as
/// UNAVAILABLE "transport error" (it uses other messages once a request is on its way).
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let m = status.message().to_ascii_lowercase();
    let real =
        m.contains("connect error") || m.contains("trying to connect") || m.contains("refused");
    #[cfg(madsim)]
    let sim = m == "transport error";
    #[cfg(not(madsim))]
    let sim = false;
    real || sim
}

#[cfg(test)]
mod connect_tests {
    use super::is_connect_failure;

    #[test]
    fn only_failures_before_sending_count() {
        assert!(is_connect_failure(&tonic::Status::unavailable(
            "tcp connect error"
        )));
        assert!(is_connect_failure(&tonic::Status::unavailable(
            "connection refused"
        )));
        assert!(!is_connect_failure(&tonic::Status::unavailable(
            "connection reset"
        )));
        assert!(!is_connect_failure(&tonic::Status::unknown(
            "connection refused"
        )));
        assert!(!is_connect_failure(&tonic::Status::deadline_exceeded(
            "timeout"
        )));
    }
}

/// A request's gRPC deadline (`grpc-timeout`: at most 8 digits and a unit), if it has a valid
/// one. More digits are garbage, not an overflow (found by the issue-10 review: `n * 3600`
/// overflowed on large values).
pub fn grpc_timeout(meta: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    use std::time::Duration;
    let v = meta.get("grpc-timeout")?.to_str().ok()?;
    if !v.is_ascii() {
        return None;
    }
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    if num.is_empty() || num.len() > 8 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod grpc_timeout_tests {
    use std::time::Duration;

    fn parse(v: &str) -> Option<Duration> {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        super::grpc_timeout(&m)
    }

    #[test]
    fn valid_values_parse_and_garbage_is_ignored() {
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        // Before: 18446744073709551615H overflowed `n * 3600`.
        assert_eq!(parse("18446744073709551615H"), None);
        assert_eq!(parse("123456789S"), None);
        for junk in ["", "S", "5", "5x", "-5S", "+5S", " 5S"] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    /// A producer is told to make `PRODUCER_MAX_ATTEMPTS` attempts with an exponential backoff
    /// (the Python client takes both from here; without the exponential strategy it keeps its
    /// own 3), keeps its topics, and learns the body limit.
    #[test]
    fn a_producer_gets_the_attempts_that_outlast_a_dead_member() {
        let s = pb::Settings {
            pub_sub: Some(pb::settings::PubSub::Publishing(pb::Publishing {
                topics: vec![pb::Resource {
                    resource_namespace: String::new(),
                    name: "t".into(),
                }],
                max_body_size: 0,
                validate_message_type: false,
            })),
            ..Default::default()
        };
        let Some(pb::telemetry_command::Command::Settings(out)) =
            settings_reply(s, None, 1 << 20).command
        else {
            panic!("no settings in the reply");
        };
        let policy = out.backoff_policy.expect("a backoff policy");
        assert_eq!(policy.max_attempts, PRODUCER_MAX_ATTEMPTS);
        // More than RocketMQ's 3: the decision, pinned (see the constant's comment).
        assert_eq!(policy.max_attempts, 10);
        assert!(matches!(
            policy.strategy,
            Some(pb::retry_policy::Strategy::ExponentialBackoff(_))
        ));
        let Some(pb::settings::PubSub::Publishing(p)) = out.pub_sub else {
            panic!("no publishing settings");
        };
        assert_eq!(p.topics.len(), 1);
        assert_eq!(p.max_body_size, 1 << 20);
    }
}
