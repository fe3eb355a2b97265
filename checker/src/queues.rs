//! Pure checks over a message-level history (sends, receives, acks), shared by the simulator
//! and, later, the real-process suite. Times are whatever clock the history was recorded with;
//! only their order matters.
//!
//! - `lost`: a send acknowledged OK whose message was never received;
//! - `unexpected`: a received message that no send attempted (or whose send definitely failed);
//! - `acked-redelivered`: a receive that started after an ack of that message returned OK
//!   handed it out again;
//! - `corrupted`: a received body differs from what was sent.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Result3 {
    /// Succeeded.
    Ok,
    /// Definitely did not happen.
    Fail,
    /// Unknown (timeout, connection lost): may or may not have happened.
    Info,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A send of message `id` with `body`.
    Send {
        id: String,
        body: Vec<u8>,
        result: Result3,
    },
    /// A receive started at `invoked` that returned `msgs` (id, body, delivery attempt).
    Receive {
        invoked: u64,
        msgs: Vec<(String, Vec<u8>, u32)>,
    },
    /// An ack of `id` that completed at `completed`.
    Ack {
        id: String,
        completed: u64,
        result: Result3,
    },
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// See the module docs.
    Lost(String),
    /// See the module docs.
    Unexpected(String),
    /// See the module docs.
    AckedRedelivered {
        id: String,
        acked_at: u64,
        received_at: u64,
    },
    /// See the module docs.
    Corrupted(String),
}

/// Counts that are not violations, for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sends acknowledged.
    pub sent_ok: usize,
    /// Sends with unknown outcome.
    pub sent_info: usize,
    /// Distinct messages received.
    pub received: usize,
    /// Deliveries beyond the first (redeliveries after expiry, retries).
    pub redeliveries: usize,
    /// Sends with unknown outcome that were received (they happened).
    pub recovered: usize,
}

/// Checks `history`.
pub fn check(history: &[Op]) -> (Vec<Anomaly>, Stats) {
    let mut out = Vec::new();
    let mut stats = Stats::default();
    let mut attempted: BTreeMap<&str, &[u8]> = BTreeMap::new();
    let mut ok_sends: BTreeSet<&str> = BTreeSet::new();
    let mut info_sends: BTreeSet<&str> = BTreeSet::new();
    let mut first_ack: BTreeMap<&str, u64> = BTreeMap::new();
    for op in history {
        match op {
            Op::Send { id, body, result } => {
                if *result != Result3::Fail {
                    attempted.insert(id, body);
                }
                match result {
                    Result3::Ok => {
                        ok_sends.insert(id);
                    }
                    Result3::Info => {
                        info_sends.insert(id);
                    }
                    Result3::Fail => {}
                }
            }
            Op::Ack {
                id,
                completed,
                result: Result3::Ok,
            } => {
                let t = first_ack.entry(id).or_insert(*completed);
                *t = (*t).min(*completed);
            }
            _ => {}
        }
    }
    let mut received: BTreeMap<&str, usize> = BTreeMap::new();
    for op in history {
        if let Op::Receive { invoked, msgs } = op {
            for (id, body, _) in msgs {
                *received.entry(id).or_default() += 1;
                match attempted.get(id.as_str()) {
                    None => out.push(Anomaly::Unexpected(id.clone())),
                    Some(b) if *b != body.as_slice() => out.push(Anomaly::Corrupted(id.clone())),
                    Some(_) => {}
                }
                if let Some(&acked_at) = first_ack.get(id.as_str())
                    && *invoked > acked_at
                {
                    out.push(Anomaly::AckedRedelivered {
                        id: id.clone(),
                        acked_at,
                        received_at: *invoked,
                    });
                }
            }
        }
    }
    for id in &ok_sends {
        if !received.contains_key(id) {
            out.push(Anomaly::Lost(id.to_string()));
        }
    }
    stats.sent_ok = ok_sends.len();
    stats.sent_info = info_sends.len();
    stats.received = received.len();
    stats.redeliveries = received.values().map(|n| n - 1).sum();
    stats.recovered = info_sends
        .iter()
        .filter(|id| received.contains_key(*id))
        .count();
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(id: &str, r: Result3) -> Op {
        Op::Send {
            id: id.into(),
            body: id.as_bytes().to_vec(),
            result: r,
        }
    }

    fn recv(t: u64, ids: &[&str]) -> Op {
        Op::Receive {
            invoked: t,
            msgs: ids
                .iter()
                .map(|i| (i.to_string(), i.as_bytes().to_vec(), 1))
                .collect(),
        }
    }

    #[test]
    fn clean_history_passes() {
        let h = vec![
            send("a", Result3::Ok),
            send("b", Result3::Info),
            recv(1, &["a", "b"]),
            Op::Ack {
                id: "a".into(),
                completed: 2,
                result: Result3::Ok,
            },
            recv(1, &["a"]), // started before the ack completed: allowed
        ];
        let (a, s) = check(&h);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(s.recovered, 1);
        assert_eq!(s.redeliveries, 1);
    }

    #[test]
    fn finds_each_anomaly() {
        let h = vec![
            send("a", Result3::Ok),
            send("lost", Result3::Ok),
            send("f", Result3::Fail),
            recv(1, &["a", "f"]),
            Op::Ack {
                id: "a".into(),
                completed: 2,
                result: Result3::Ok,
            },
            recv(3, &["a"]),
            Op::Receive {
                invoked: 4,
                msgs: vec![("a".into(), b"zz".to_vec(), 2)],
            },
        ];
        let (a, _) = check(&h);
        assert!(a.contains(&Anomaly::Lost("lost".into())));
        assert!(a.contains(&Anomaly::Unexpected("f".into())));
        assert!(
            a.iter()
                .any(|x| matches!(x, Anomaly::AckedRedelivered { id, .. } if id == "a"))
        );
        assert!(a.contains(&Anomaly::Corrupted("a".into())));
    }
}
