//! The message-level checker of the whole-cluster simulation (and, later, the real-process
//! suite): pure code over a client history. Anomaly names follow the testing plan (§5.3):
//!
//! - `lost`: a send acknowledged OK that no consumer of the main group ever received;
//! - `unexpected`: a delivered message that no send attempted;
//! - `aborted-read`: a delivered message whose send the client was told definitely failed;
//! - `corrupted`: a delivered body differs from the one sent;
//! - `future-read`: a delivery completed before the message's send was invoked;
//! - `duplicate`: one message id stored at two queue positions (the client resends only
//!   after definite failures, so the retry-duplicate bound is zero);
//! - `inconsistent-offsets`: one queue position read back as two different messages;
//! - `acked-redelivered`: a receive invoked after an OK ack of the message returned it
//!   (for a send that may repeat, an extra copy: `retry-duplicate`, counted, allowed);
//! - `concurrent-ownership`: two deliveries of one message whose invisibility windows must
//!   have overlapped (a message held by two consumers at once; a window is the requested
//!   duration less [`RECEIPT_CLOCK_SLACK_PPM`]);
//! - `order-violation`: a FIFO consumer was handed an earlier message of a message group
//!   after it had acknowledged a later one;
//! - `poll-skip`: a FIFO consumer got a message of a group while an earlier acknowledged
//!   send of that group had never been delivered;
//! - `nonmonotonic-poll` / `hole`: a pull returned offsets that do not start at the asked
//!   offset and increase by one, or a next offset behind the request;
//! - `commit-regression`: a committed-offset read returned less than a commit that had
//!   completed OK before the read began.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde::Serialize;

/// How much shorter than requested an invisibility window may be, in parts per million: the
/// cluster clock's slew (`broker::clock::SLEW_PPM`, 1,000) plus the simulator's largest
/// monotonic drift (500), rounded up.
/// (The crate is pure and does not link the broker: `simulation` asserts the relation with
/// `broker::clock::SLEW_PPM` at compile time.)
pub const RECEIPT_CLOCK_SLACK_PPM: u64 = 2_000;

pub use crate::queues::Result3;

/// A queue position: (broker, queue id, offset).
pub type Pos = (String, i32, i64);

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Message id.
    pub id: String,
    /// Body.
    pub body: Vec<u8>,
    /// Delivery attempt.
    pub attempt: u32,
    /// Where it is stored, if the broker said.
    pub pos: Option<Pos>,
}

/// One client operation; times are microseconds of (virtual) time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A send; `group` is the FIFO message group.
    Send {
        /// Message id.
        id: String,
        /// Body.
        body: Vec<u8>,
        /// Message group.
        group: Option<String>,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
        /// Where the broker stored it (OK sends).
        pos: Option<Pos>,
        /// The client may have stored it more than once under this id: it resends after
        /// unknown outcomes, as the official SDKs do. Its extra copies are `retry-duplicate`s
        /// (allowed, counted), so a delivery after an ack or two overlapping deliveries are
        /// not violations for it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        may_repeat: bool,
    },
    /// A receive by `consumer`; `fifo` if the consumer group is FIFO.
    Receive {
        /// Consumer process.
        consumer: u32,
        /// FIFO consumer group.
        fifo: bool,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Invisible duration asked for.
        invisible_us: u64,
        /// What came back.
        msgs: Vec<Delivered>,
    },
    /// An ack.
    Ack {
        /// Consumer process.
        consumer: u32,
        /// Message id.
        id: String,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// A pull of one queue from `from`.
    Pull {
        /// Broker.
        broker: String,
        /// Queue.
        queue: i32,
        /// Offset asked.
        from: i64,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// (offset, id, body) in answer order.
        msgs: Vec<(i64, String, Vec<u8>)>,
        /// Next offset answered.
        next: i64,
    },
    /// A forward-only offset commit.
    Commit {
        /// Broker.
        broker: String,
        /// Queue.
        queue: i32,
        /// Offset.
        offset: i64,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// A read of the committed offset.
    ReadCommitted {
        /// Broker.
        broker: String,
        /// Queue.
        queue: i32,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Value read (`None`: never committed).
        value: Option<i64>,
    },
}

/// One violation: its name (the testing plan's vocabulary) and a readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// Anomaly name, e.g. `lost`.
    pub kind: &'static str,
    /// What exactly.
    pub detail: String,
}

fn anomaly(kind: &'static str, detail: String) -> Anomaly {
    Anomaly { kind, detail }
}

/// Counts for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sends acknowledged OK.
    pub sent_ok: usize,
    /// Sends that definitely failed.
    pub sent_fail: usize,
    /// Sends with unknown outcome.
    pub sent_info: usize,
    /// Unknown sends that were delivered (they happened).
    pub recovered: usize,
    /// Distinct messages received by consumers.
    pub received: usize,
    /// Deliveries beyond the first.
    pub redeliveries: usize,
    /// FIFO deliveries checked for order.
    pub fifo_delivered: usize,
    /// Messages read by pulls.
    pub pulled: usize,
    /// Extra copies of sends that may repeat (`retry-duplicate`: allowed, counted).
    #[serde(default)]
    pub retry_duplicates: usize,
}

/// Checks `history`. Deliveries by receives (plain and FIFO consumers) count for `lost`;
/// pulls are checked for consistency only.
pub fn check<'h>(history: &'h [Op]) -> (Vec<Anomaly>, Stats) {
    let mut out = Vec::new();
    let mut st = Stats::default();
    let mut attempted: BTreeMap<&'h str, (&'h [u8], u64)> = BTreeMap::new();
    let mut failed: BTreeSet<&'h str> = BTreeSet::new();
    let mut ok: BTreeSet<&'h str> = BTreeSet::new();
    let mut info: BTreeSet<&'h str> = BTreeSet::new();
    let mut first_ack: BTreeMap<&'h str, u64> = BTreeMap::new();
    let mut positions: BTreeMap<Pos, &'h str> = BTreeMap::new();
    let mut places: BTreeMap<&'h str, BTreeSet<Pos>> = BTreeMap::new();
    // FIFO: per group, the sends in invocation order with their outcome.
    let mut fifo_sends: BTreeMap<&str, Vec<(u64, &str, Result3)>> = BTreeMap::new();
    // Ids a client may have stored more than once (see `Op::Send::may_repeat`).
    let mut repeats: BTreeSet<&'h str> = BTreeSet::new();

    for op in history {
        match op {
            Op::Send {
                id,
                body,
                group,
                invoked,
                result,
                may_repeat,
                ..
            } => {
                if *may_repeat {
                    repeats.insert(id);
                }
                match result {
                    Result3::Ok => {
                        ok.insert(id);
                    }
                    Result3::Info => {
                        info.insert(id);
                    }
                    Result3::Fail => {
                        failed.insert(id);
                    }
                }
                if *result != Result3::Fail {
                    attempted.entry(id).or_insert((body, *invoked));
                }
                if let Some(g) = group {
                    fifo_sends
                        .entry(g)
                        .or_default()
                        .push((*invoked, id, *result));
                }
            }
            Op::Ack {
                id,
                completed,
                result: Result3::Ok,
                ..
            } => {
                let t = first_ack.entry(id).or_insert(*completed);
                *t = (*t).min(*completed);
            }
            _ => {}
        }
    }
    // A failed send whose id was later sent again successfully is not a failed message.
    failed.retain(|id| !attempted.contains_key(id));

    let mut record_pos = |out: &mut Vec<Anomaly>, pos: &Pos, id: &'h str| {
        match positions.get(pos) {
            Some(other) if *other != id => out.push(anomaly(
                "inconsistent-offsets",
                format!("{pos:?} read as {other} and as {id}"),
            )),
            Some(_) => {}
            None => {
                positions.insert(pos.clone(), id);
            }
        }
        places.entry(id).or_default().insert(pos.clone());
    };
    let check_delivery =
        |out: &mut Vec<Anomaly>, id: &str, body: &[u8], completed: u64| match attempted.get(id) {
            None if failed.contains(id) => out.push(anomaly(
                "aborted-read",
                format!("{id} was delivered but its send definitely failed"),
            )),
            None => out.push(anomaly("unexpected", format!("{id} was never sent"))),
            Some((b, _)) if *b != body => {
                out.push(anomaly("corrupted", format!("{id}: body differs")))
            }
            Some((_, invoked)) if completed < *invoked => out.push(anomaly(
                "future-read",
                format!("{id} delivered at {completed} before its send began at {invoked}"),
            )),
            Some(_) => {}
        };

    for op in history {
        if let Op::Send {
            id,
            pos: Some(p),
            result: Result3::Ok,
            ..
        } = op
        {
            record_pos(&mut out, p, id);
        }
    }

    // The broker promises an invisible duration up to the cluster clock's slew short
    // (docs/guarantees.md); the simulator's monotonic clocks may also drift. A window is the
    // requested duration less both.
    let at_least = |v: u64| v - v * RECEIPT_CLOCK_SLACK_PPM / 1_000_000;
    let mut received: BTreeMap<&'h str, usize> = BTreeMap::new();
    // Per message id: (invoked, completed, invisible) of each delivery to a consumer.
    let mut windows: BTreeMap<&'h str, Vec<(u64, u64, u64)>> = BTreeMap::new();
    // FIFO deliveries in completion order.
    let mut fifo_seen: Vec<(u64, &'h str)> = Vec::new();
    for op in history {
        match op {
            Op::Receive {
                fifo,
                invoked,
                completed,
                invisible_us,
                msgs,
                ..
            } => {
                for (k, d) in msgs.iter().enumerate() {
                    check_delivery(&mut out, &d.id, &d.body, *completed);
                    if let Some(p) = &d.pos {
                        record_pos(&mut out, p, &d.id);
                    }
                    if let Some(&acked) = first_ack.get(d.id.as_str())
                        && *invoked > acked
                        && repeats.contains(d.id.as_str())
                    {
                        st.retry_duplicates += 1;
                    } else if let Some(&acked) = first_ack.get(d.id.as_str())
                        && *invoked > acked
                    {
                        out.push(anomaly(
                            "acked-redelivered",
                            format!(
                                "{} acked at {acked}, handed out again by a receive invoked at {invoked}",
                                d.id
                            ),
                        ));
                    }
                    if *fifo {
                        fifo_seen.push((*completed * 1024 + k as u64, &d.id));
                    } else {
                        *received.entry(&d.id).or_default() += 1;
                    }
                    windows
                        .entry(&d.id)
                        .or_default()
                        .push((*invoked, *completed, *invisible_us));
                }
            }
            Op::Pull {
                broker,
                queue,
                from,
                completed,
                msgs,
                next,
                ..
            } => {
                st.pulled += msgs.len();
                for (k, (off, id, body)) in msgs.iter().enumerate() {
                    check_delivery(&mut out, id, body, *completed);
                    record_pos(&mut out, &(broker.clone(), *queue, *off), id);
                    if *off != from + k as i64 {
                        out.push(anomaly(
                            if *off > from + k as i64 {
                                "hole"
                            } else {
                                "nonmonotonic-poll"
                            },
                            format!(
                                "pull of {broker}/{queue} from {from}: entry {k} is offset {off}"
                            ),
                        ));
                    }
                }
                if *next < *from {
                    out.push(anomaly(
                        "nonmonotonic-poll",
                        format!("pull of {broker}/{queue} from {from} answered next {next}"),
                    ));
                }
            }
            _ => {}
        }
    }
    for (id, ps) in &places {
        if ps.len() > 1 && repeats.contains(id) {
            st.retry_duplicates += ps.len() - 1;
        } else if ps.len() > 1 {
            out.push(anomaly("duplicate", format!("{id} stored at {ps:?}")));
        }
    }
    // Receipt exclusivity: both windows contain the other's delivery.
    for (id, ws) in windows.iter().filter(|(id, _)| !repeats.contains(*id)) {
        for (a, x) in ws.iter().enumerate() {
            for y in &ws[a + 1..] {
                let (i1, c1, v1) = *x;
                let (i2, c2, v2) = *y;
                let (v1, v2) = (at_least(v1), at_least(v2));
                if c2 < i1 + v1 && c1 < i2 + v2 && !first_ack.contains_key(id) {
                    out.push(anomaly(
                        "concurrent-ownership",
                        format!(
                            "{id} delivered at [{i1},{c1}] and [{i2},{c2}] within invisibility"
                        ),
                    ));
                }
            }
        }
    }
    // FIFO order per message group. A consumer that acknowledged #j has processed it, so
    // handing it an earlier #i afterwards inverts the order; redelivering a whole unacked
    // batch does not. Skipping an acknowledged send is a violation too.
    fifo_seen.sort();
    st.fifo_delivered = fifo_seen.len();
    let mut fifo_receives: Vec<(u64, &'h str)> = Vec::new();
    let mut fifo_acks: Vec<(u64, &'h str)> = Vec::new();
    for op in history {
        match op {
            Op::Receive {
                fifo: true,
                invoked,
                msgs,
                ..
            } => fifo_receives.extend(msgs.iter().map(|m| (*invoked, m.id.as_str()))),
            Op::Ack {
                id,
                completed,
                result: Result3::Ok,
                ..
            } => fifo_acks.push((*completed, id)),
            _ => {}
        }
    }
    for (group, sends) in &fifo_sends {
        let index: BTreeMap<&str, usize> =
            sends.iter().enumerate().map(|(i, s)| (s.1, i)).collect();
        let acks: Vec<(u64, usize)> = fifo_acks
            .iter()
            .filter_map(|(t, id)| index.get(id).map(|i| (*t, *i)))
            .collect();
        for (invoked, id) in &fifo_receives {
            let Some(&i) = index.get(id) else { continue };
            if let Some((t, j)) = acks.iter().find(|(t, j)| t < invoked && *j > i) {
                out.push(anomaly(
                    "order-violation",
                    format!("group {group}: #{i} {id} handed out at {invoked} after #{j} was acknowledged at {t}"),
                ));
            }
        }
        let mut delivered: BTreeSet<usize> = BTreeSet::new();
        for (_, id) in &fifo_seen {
            let Some(&i) = index.get(id) else { continue };
            if let Some(skipped) =
                (0..i).find(|j| sends[*j].2 == Result3::Ok && !delivered.contains(j))
            {
                out.push(anomaly(
                    "poll-skip",
                    format!(
                        "group {group}: #{i} {id} delivered before acknowledged #{skipped} {}",
                        sends[skipped].1
                    ),
                ));
            }
            delivered.insert(i);
        }
    }
    // Committed offsets never read lower than a commit that completed before the read.
    let mut commits: BTreeMap<(&str, i32), Vec<(u64, i64)>> = BTreeMap::new();
    for op in history {
        if let Op::Commit {
            broker,
            queue,
            offset,
            completed,
            result: Result3::Ok,
            ..
        } = op
        {
            commits
                .entry((broker, *queue))
                .or_default()
                .push((*completed, *offset));
        }
    }
    for op in history {
        if let Op::ReadCommitted {
            broker,
            queue,
            invoked,
            value,
            ..
        } = op
        {
            let floor = commits
                .get(&(broker.as_str(), *queue))
                .into_iter()
                .flatten()
                .filter(|(c, _)| c < invoked)
                .map(|(_, o)| *o)
                .max();
            if let Some(f) = floor
                && value.is_none_or(|v| v < f)
            {
                out.push(anomaly(
                    "commit-regression",
                    format!("{broker}/{queue}: read {value:?} at {invoked} after a commit of {f}"),
                ));
            }
        }
    }
    let fifo_ids: BTreeSet<&str> = fifo_seen.iter().map(|(_, id)| *id).collect();
    for id in &ok {
        if !received.contains_key(id) && !fifo_ids.contains(id) {
            out.push(anomaly(
                "lost",
                format!("{id} was acknowledged but never delivered"),
            ));
        }
    }
    st.sent_ok = ok.len();
    st.sent_info = info.len();
    st.sent_fail = failed.len();
    st.received = received.len();
    st.redeliveries = received.values().map(|n| n - 1).sum();
    st.recovered = info
        .iter()
        .filter(|id| received.contains_key(*id) || fifo_ids.contains(*id))
        .count();
    (out, st)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(id: &str, group: Option<&str>, t: u64, r: Result3, pos: Option<i64>) -> Op {
        Op::Send {
            id: id.into(),
            body: id.as_bytes().to_vec(),
            group: group.map(str::to_string),
            invoked: t,
            completed: t + 1,
            result: r,
            pos: pos.map(|o| ("b".to_string(), 0, o)),
            may_repeat: false,
        }
    }

    fn recv(consumer: u32, fifo: bool, t: u64, ids: &[(&str, i64)]) -> Op {
        Op::Receive {
            consumer,
            fifo,
            invoked: t,
            completed: t + 1,
            invisible_us: 100,
            msgs: ids
                .iter()
                .map(|(id, o)| Delivered {
                    id: id.to_string(),
                    body: id.as_bytes().to_vec(),
                    attempt: 1,
                    pos: Some(("b".to_string(), 0, *o)),
                })
                .collect(),
        }
    }

    fn ack(id: &str, t: u64) -> Op {
        Op::Ack {
            consumer: 0,
            id: id.into(),
            invoked: t,
            completed: t + 1,
            result: Result3::Ok,
        }
    }

    fn kinds(h: &[Op]) -> Vec<&'static str> {
        check(h).0.into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let h = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 2, Result3::Info, None),
            send("c", None, 4, Result3::Fail, None),
            recv(0, false, 10, &[("a", 0), ("b", 1)]),
            ack("a", 12),
            // b comes back after its invisibility expired.
            recv(1, false, 200, &[("b", 1)]),
            ack("b", 202),
        ];
        let (a, st) = check(&h);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(
            (st.sent_ok, st.sent_info, st.sent_fail, st.recovered),
            (1, 1, 1, 1)
        );
        assert_eq!(st.redeliveries, 1);
    }

    #[test]
    fn each_violation_is_named() {
        // lost, aborted-read, unexpected, corrupted, future-read
        let mut h = vec![
            send("lost", None, 0, Result3::Ok, None),
            send("failed", None, 0, Result3::Fail, None),
            send("late", None, 50, Result3::Ok, None),
            recv(0, false, 10, &[("failed", 0), ("ghost", 1), ("late", 2)]),
        ];
        if let Op::Receive { msgs, .. } = &mut h[3] {
            msgs.push(Delivered {
                id: "lost2".into(),
                body: b"x".to_vec(),
                attempt: 1,
                pos: None,
            });
        }
        h.push(send("lost2", None, 0, Result3::Ok, None));
        let k = kinds(&h);
        for want in [
            "lost",
            "aborted-read",
            "unexpected",
            "future-read",
            "corrupted",
        ] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn a_send_that_may_repeat_is_a_counted_retry_duplicate_not_a_violation() {
        let repeat = |mut op: Op| {
            if let Op::Send { may_repeat, .. } = &mut op {
                *may_repeat = true;
            }
            op
        };
        // The same history with and without the flag: stored twice, delivered after an ack,
        // and delivered to two consumers at once.
        let h = |flag: bool| {
            let (a, c) = (
                send("a", None, 0, Result3::Ok, Some(0)),
                send("c", None, 0, Result3::Ok, Some(2)),
            );
            let (a, c) = if flag { (repeat(a), repeat(c)) } else { (a, c) };
            vec![
                a,
                c,
                recv(0, false, 10, &[("a", 0), ("c", 2)]),
                recv(1, false, 11, &[("a", 1), ("c", 3)]),
                ack("a", 12),
                recv(0, false, 20, &[("a", 1)]),
            ]
        };
        let (anomalies, stats) = check(&h(true));
        assert!(anomalies.is_empty(), "{anomalies:?}");
        // a and c each stored twice, and a delivered after its ack.
        assert_eq!(stats.retry_duplicates, 3);
        let k = kinds(&h(false));
        for want in ["duplicate", "acked-redelivered", "concurrent-ownership"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn positions_and_receipts_are_checked() {
        let h = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            // b read back at a's position; a stored twice.
            recv(0, false, 10, &[("b", 0), ("a", 5)]),
            ack("a", 12),
            // a again after an OK ack; b again while still invisible to consumer 0.
            recv(1, false, 20, &[("a", 5), ("b", 1)]),
        ];
        let k = kinds(&h);
        for want in [
            "inconsistent-offsets",
            "duplicate",
            "acked-redelivered",
            "concurrent-ownership",
        ] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }

    #[test]
    fn fifo_order_and_skips() {
        let g = Some("g");
        let h = vec![
            send("f0", g, 0, Result3::Ok, None),
            send("f1", g, 2, Result3::Info, None),
            send("f2", g, 4, Result3::Ok, None),
            send("f3", g, 6, Result3::Ok, None),
            recv(0, true, 10, &[("f0", 0)]),
            ack("f0", 11),
            // f1 (unknown outcome) may be skipped; an unacknowledged batch comes again whole.
            recv(0, true, 12, &[("f2", 2), ("f3", 3)]),
            recv(0, true, 200, &[("f2", 2), ("f3", 3)]),
            ack("f2", 202),
            recv(0, true, 400, &[("f3", 3)]),
        ];
        assert!(kinds(&h).is_empty(), "{:?}", check(&h).0);
        let bad = vec![
            send("f0", g, 0, Result3::Ok, None),
            send("f1", g, 2, Result3::Ok, None),
            send("f2", g, 4, Result3::Ok, None),
            recv(0, true, 10, &[("f0", 0), ("f2", 2)]),
            ack("f2", 20),
            recv(0, true, 400, &[("f1", 1)]),
        ];
        let k = kinds(&bad);
        assert!(k.contains(&"poll-skip"), "{k:?}");
        assert!(k.contains(&"order-violation"), "{k:?}");
    }

    #[test]
    fn pulls_and_commits() {
        let pull = |from: i64, offs: &[(i64, &str)], next: i64| Op::Pull {
            broker: "b".into(),
            queue: 0,
            from,
            invoked: 10,
            completed: 11,
            msgs: offs
                .iter()
                .map(|(o, id)| (*o, id.to_string(), id.as_bytes().to_vec()))
                .collect(),
            next,
        };
        let commit = |o: i64, t: u64| Op::Commit {
            broker: "b".into(),
            queue: 0,
            offset: o,
            invoked: t,
            completed: t + 1,
            result: Result3::Ok,
        };
        let read = |v: Option<i64>, t: u64| Op::ReadCommitted {
            broker: "b".into(),
            queue: 0,
            invoked: t,
            completed: t + 1,
            value: v,
        };
        let good = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            recv(0, false, 5, &[("a", 0), ("b", 1)]),
            pull(0, &[(0, "a"), (1, "b")], 2),
            commit(2, 20),
            read(Some(2), 30),
            commit(1, 40),
            read(Some(2), 50),
        ];
        assert!(kinds(&good).is_empty(), "{:?}", check(&good).0);
        let bad = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            recv(0, false, 5, &[("a", 0), ("b", 1)]),
            pull(0, &[(1, "b")], 0),
            commit(2, 20),
            read(Some(1), 30),
        ];
        let k = kinds(&bad);
        for want in ["hole", "commit-regression"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }
}
