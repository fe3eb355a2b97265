//! The history file both suites write and read (`history.jsonl`: Jepsen's fields in JSON, one
//! line per event) and the `results.json` layout (testing plan §5.3). Pure: values in, strings
//! out; the callers do the IO.
//!
//! A client operation ([`Op`]) becomes two lines: an `invoke` at its start, and at its end an
//! `ok`, `fail` (it definitely did not happen) or `info` (unknown) whose `value` is the whole
//! operation, so [`ops`] rebuilds exactly what the checker saw. A fault becomes two `info`
//! lines of the process `nemesis`: `start-<name>` and `stop-<name>`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

use crate::messages::Anomaly;
use crate::messages::Op;
use crate::messages::Result3;
use crate::messages::Stats;

/// How an event ends an operation (or starts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operation began.
    Invoke,
    /// It happened.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown, or a nemesis event.
    Info,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the file.
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time_ns: u64,
    /// Who: a producer (`p0`, `f1`), a consumer (`c2`), the offset reader (`puller`) or
    /// `nemesis`.
    pub process: String,
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The operation: `send`, `receive`, `ack`, `pull`, `commit`, `read-committed`, or a
    /// nemesis `start-…`/`stop-…`.
    pub f: String,
    /// Completions: the whole operation; invocations: what was asked.
    pub value: serde_json::Value,
}

/// The process name of nemesis events.
pub const NEMESIS: &str = "nemesis";

/// A fault interval, as the nemesis recorded it (times in µs since the run started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Nemesis name: `partition`, `kill`, `pause`, `clock`, …
    pub name: String,
    /// Its shape and targets.
    pub detail: serde_json::Value,
    /// When it began.
    pub start_us: u64,
    /// When it was healed (`None`: still on when the history ends).
    pub end_us: Option<u64>,
}

fn f_name(op: &Op) -> &'static str {
    match op {
        Op::Send { .. } => "send",
        Op::Receive { .. } => "receive",
        Op::Ack { .. } => "ack",
        Op::Pull { .. } => "pull",
        Op::Commit { .. } => "commit",
        Op::ReadCommitted { .. } => "read-committed",
        Op::Expired { .. } => "expired",
        Op::Scheduled { .. } => "scheduled",
        Op::Recall { .. } => "recall",
        Op::Transaction { .. } => "transaction",
        Op::EndTx { .. } => "end-transaction",
        Op::TxChecked { .. } => "transaction-checked",
        Op::TxCheckOwed { .. } => "transaction-check-owed",
        Op::Reset { .. } => "reset",
    }
}

/// Who ran `op`: producers are named by their bodies' prefix (`p3-17:xxx` → `p3`; the
/// workloads write `<producer>-<n>:` first, whatever message id the client assigned).
pub fn process(op: &Op) -> String {
    match op {
        Op::Send { body, .. } => {
            let head = body.split(|b| *b == b':').next().unwrap_or_default();
            let head = String::from_utf8_lossy(head);
            head.rsplit_once('-').map_or(&*head, |(p, _)| p).to_string()
        }
        Op::Receive { consumer, .. } | Op::Ack { consumer, .. } => format!("c{consumer}"),
        // The scheduling producer's ids are `<producer>-<n>`.
        Op::Scheduled { id, .. }
        | Op::Recall { id, .. }
        | Op::Transaction { id, .. }
        | Op::TxChecked { id, .. }
        | Op::EndTx { id, .. } => id
            .rsplit_once('-')
            .map_or(id.as_str(), |(p, _)| p)
            .to_string(),
        Op::Pull { .. } | Op::Commit { .. } | Op::ReadCommitted { .. } => "puller".into(),
        Op::Expired { .. } => "retention".into(),
        Op::TxCheckOwed { .. } => "runner".into(),
        Op::Reset { .. } => "operator".into(),
    }
}

/// When `op` started and ended (µs).
pub fn span(op: &Op) -> (u64, u64) {
    match op {
        Op::Send {
            invoked, completed, ..
        }
        | Op::Receive {
            invoked, completed, ..
        }
        | Op::Ack {
            invoked, completed, ..
        }
        | Op::Pull {
            invoked, completed, ..
        }
        | Op::Commit {
            invoked, completed, ..
        }
        | Op::ReadCommitted {
            invoked, completed, ..
        }
        | Op::Expired {
            invoked, completed, ..
        }
        | Op::Recall {
            invoked, completed, ..
        }
        | Op::EndTx {
            invoked, completed, ..
        }
        | Op::Reset {
            invoked, completed, ..
        } => (*invoked, *completed),
        Op::Scheduled { invoked, .. } | Op::Transaction { invoked, .. } => (*invoked, *invoked),
        Op::TxChecked { at, .. } | Op::TxCheckOwed { from: at, .. } => (*at, *at),
    }
}

/// How `op` ended.
pub fn outcome(op: &Op) -> Kind {
    match op {
        Op::Send { result, .. }
        | Op::Ack { result, .. }
        | Op::Commit { result, .. }
        | Op::Recall { result, .. }
        | Op::EndTx { result, .. }
        | Op::Reset { result, .. } => match result {
            Result3::Ok => Kind::Ok,
            Result3::Fail => Kind::Fail,
            Result3::Info => Kind::Info,
        },
        Op::Receive { .. }
        | Op::Pull { .. }
        | Op::ReadCommitted { .. }
        | Op::Expired { .. }
        | Op::Scheduled { .. }
        | Op::Transaction { .. }
        | Op::TxChecked { .. }
        | Op::TxCheckOwed { .. } => Kind::Ok,
    }
}

fn invoke_value(op: &Op) -> serde_json::Value {
    match op {
        Op::Send { id, group, .. } => serde_json::json!({ "id": id, "group": group }),
        Op::Receive { invisible_us, .. } => serde_json::json!({ "invisible_us": invisible_us }),
        Op::Ack { id, .. } => serde_json::json!({ "id": id }),
        Op::Pull {
            broker,
            queue,
            from,
            ..
        } => serde_json::json!({ "broker": broker, "queue": queue, "from": from }),
        Op::Commit {
            broker,
            queue,
            offset,
            ..
        } => serde_json::json!({ "broker": broker, "queue": queue, "offset": offset }),
        Op::ReadCommitted { broker, queue, .. } => {
            serde_json::json!({ "broker": broker, "queue": queue })
        }
        Op::Expired { .. } => serde_json::json!({}),
        Op::Scheduled { id, not_before, .. } => {
            serde_json::json!({ "id": id, "not_before": not_before })
        }
        Op::Recall { id, .. } => serde_json::json!({ "id": id }),
        Op::Transaction { id, commit, .. } | Op::EndTx { id, commit, .. } => {
            serde_json::json!({ "id": id, "commit": commit })
        }
        Op::TxChecked { id, .. } => serde_json::json!({ "id": id }),
        Op::TxCheckOwed { within, .. } => serde_json::json!({ "within": within }),
        Op::Reset { fifo, .. } => serde_json::json!({ "fifo": fifo, "to": "earliest" }),
    }
}

/// The events of a run, in time order (ties: invocations after completions, as they could not
/// have been seen together), numbered from 0.
pub fn events(ops: &[Op], faults: &[Fault]) -> Vec<Event> {
    // (time, completion first, sequence) orders the lines.
    let mut keyed: Vec<((u64, u8, usize), Event)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        let (inv, done) = span(op);
        let p = process(op);
        let f = f_name(op).to_string();
        keyed.push((
            (inv, 1, 2 * i),
            event(&p, Kind::Invoke, &f, inv, invoke_value(op)),
        ));
        let value = serde_json::to_value(op).unwrap_or(serde_json::Value::Null);
        keyed.push((
            (done, 0, 2 * i + 1),
            event(&p, outcome(op), &f, done, value),
        ));
    }
    let base = ops.len() * 2;
    for (i, fault) in faults.iter().enumerate() {
        let start = format!("start-{}", fault.name);
        let detail = fault.detail.clone();
        keyed.push((
            (fault.start_us, 1, base + 2 * i),
            event(NEMESIS, Kind::Info, &start, fault.start_us, detail.clone()),
        ));
        if let Some(end) = fault.end_us {
            let stop = format!("stop-{}", fault.name);
            keyed.push((
                (end, 0, base + 2 * i + 1),
                event(NEMESIS, Kind::Info, &stop, end, detail),
            ));
        }
    }
    keyed.sort_by_key(|(k, _)| *k);
    keyed
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut e))| {
            e.index = i as u64;
            e
        })
        .collect()
}

fn event(process: &str, kind: Kind, f: &str, us: u64, value: serde_json::Value) -> Event {
    Event {
        index: 0,
        time_ns: us.saturating_mul(1000),
        process: process.to_string(),
        kind,
        f: f.to_string(),
        value,
    }
}

/// One JSON object per line.
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&serde_json::to_string(e).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Parses `history.jsonl`; the error names the line.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

/// The client operations of a history, in completion order (what [`crate::messages::check`]
/// takes).
pub fn ops(events: &[Event]) -> Result<Vec<Op>, String> {
    events
        .iter()
        .filter(|e| e.kind != Kind::Invoke && e.process != NEMESIS)
        .map(|e| {
            serde_json::from_value(e.value.clone())
                .map_err(|err| format!("event {}: {err}", e.index))
        })
        .collect()
}

/// The fault intervals of a history.
pub fn faults(events: &[Event]) -> Vec<Fault> {
    let mut out: Vec<Fault> = Vec::new();
    let mut open: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.process == NEMESIS) {
        let us = e.time_ns / 1000;
        if let Some(name) = e.f.strip_prefix("start-") {
            open.entry(name.to_string()).or_default().push(out.len());
            out.push(Fault {
                name: name.to_string(),
                detail: e.value.clone(),
                start_us: us,
                end_us: None,
            });
        } else if let Some(name) = e.f.strip_prefix("stop-")
            && let Some(i) = open.get_mut(name).and_then(|v| v.pop())
        {
            out[i].end_us = Some(us);
        }
    }
    out
}

/// Examples kept per anomaly type (Jepsen's condensed errors).
pub const MAX_EXAMPLES: usize = 32;

/// One anomaly type in `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many.
    pub count: usize,
    /// The first [`MAX_EXAMPLES`].
    pub examples: Vec<String>,
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// `true`, `false` or `"unknown"` (the drain did not finish: a liveness question).
    pub valid: serde_json::Value,
    /// The violation types found.
    pub bad_anomaly_types: Vec<String>,
    /// Every type found, violations and counted-but-allowed ones (`recovered`, `redelivery`).
    pub anomaly_types: Vec<String>,
    /// Per type: count and examples.
    pub anomalies: BTreeMap<String, Summary>,
    /// Operation counts.
    pub stats: Stats,
    /// Why `valid` is what it is.
    pub valid_reason: String,
}

/// Builds `results.json` from the checker's verdict. `unfinished` names a liveness failure
/// (e.g. the drain did not end within its bound), which makes the run `unknown` unless there
/// are violations anyway.
pub fn results(anomalies: &[Anomaly], stats: Stats, unfinished: Option<&str>) -> Results {
    let mut by: BTreeMap<String, Summary> = BTreeMap::new();
    for a in anomalies {
        let s = by.entry(a.kind.to_string()).or_insert(Summary {
            count: 0,
            examples: Vec::new(),
        });
        s.count += 1;
        if s.examples.len() < MAX_EXAMPLES {
            s.examples.push(a.detail.clone());
        }
    }
    let bad: Vec<String> = by.keys().cloned().collect();
    let mut all = bad.clone();
    for (n, name) in [
        (stats.recovered, "recovered"),
        (stats.redeliveries, "redelivery"),
    ] {
        if n > 0 {
            all.push(name.to_string());
            by.insert(
                name.to_string(),
                Summary {
                    count: n,
                    examples: Vec::new(),
                },
            );
        }
    }
    all.sort();
    let (valid, reason) = match (bad.is_empty(), unfinished) {
        (false, _) => (false.into(), "violations present".to_string()),
        (true, Some(why)) => ("unknown".into(), why.to_string()),
        (true, None) => (true.into(), "no violations".to_string()),
    };
    Results {
        valid,
        bad_anomaly_types: bad,
        anomaly_types: all,
        anomalies: by,
        stats,
        valid_reason: reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(id: &str, t: u64, result: Result3) -> Op {
        Op::Send {
            id: id.into(),
            body: id.as_bytes().to_vec(),
            group: None,
            invoked: t,
            completed: t + 5,
            result,
            pos: None,
            may_repeat: false,
            topic: None,
        }
    }

    #[test]
    fn a_history_survives_the_file_round_trip() {
        let history = vec![
            send("p0-0", 10, Result3::Ok),
            send("p0-1", 20, Result3::Info),
            Op::Receive {
                consumer: 1,
                fifo: false,
                invoked: 12,
                completed: 40,
                invisible_us: 5_000_000,
                msgs: vec![crate::messages::Delivered {
                    id: "p0-0".into(),
                    body: b"p0-0".to_vec(),
                    attempt: 1,
                    pos: Some(("t/g1".into(), 0, 7)),
                }],
            },
        ];
        let faults = vec![Fault {
            name: "partition".into(),
            detail: serde_json::json!({"shape": "halves"}),
            start_us: 11,
            end_us: Some(30),
        }];
        let ev = events(&history, &faults);
        assert_eq!(ev.len(), 8);
        assert!(ev.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        assert_eq!(ev[0].kind, Kind::Invoke);
        assert_eq!(ev[0].process, "p0");
        let text = to_jsonl(&ev);
        let back = parse(&text).unwrap();
        assert_eq!(back, ev);
        let mut got = ops(&back).unwrap();
        let mut want = history.clone();
        got.sort_by_key(|o| format!("{o:?}"));
        want.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(got, want);
        assert_eq!(super::faults(&back), faults);
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = parse("{}\n").unwrap_err();
        assert!(e.starts_with("line 1:"), "{e}");
    }

    #[test]
    fn results_follow_the_jepsen_layout() {
        let none = results(&[], Stats::default(), None);
        assert_eq!(none.valid, serde_json::json!(true));
        let stuck = results(&[], Stats::default(), Some("drain did not finish"));
        assert_eq!(stuck.valid, serde_json::json!("unknown"));
        let lost: Vec<Anomaly> = (0..40)
            .map(|i| Anomaly {
                kind: "lost",
                detail: format!("m{i}"),
            })
            .collect();
        let stats = Stats {
            redeliveries: 3,
            ..Stats::default()
        };
        let r = results(&lost, stats, Some("ignored: violations win"));
        assert_eq!(r.valid, serde_json::json!(false));
        assert_eq!(r.bad_anomaly_types, vec!["lost"]);
        assert_eq!(r.anomaly_types, vec!["lost", "redelivery"]);
        assert_eq!(r.anomalies["lost"].count, 40);
        assert_eq!(r.anomalies["lost"].examples.len(), MAX_EXAMPLES);
        assert_eq!(r.anomalies["redelivery"].count, 3);
    }
}
