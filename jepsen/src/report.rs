//! `report.html`: one self-contained file (inline SVG and CSS, no scripts) per run — the
//! verdict and counts, the faults, throughput and latency over time with fault windows
//! shaded, a Jepsen-style timeline (one column per process, one box per operation from invoke
//! to completion: green ok, red fail, orange info; hover for the value), and every anomaly
//! with the message ids involved.

use std::collections::BTreeMap;
use std::fmt::Write;

use checker::jsonl;
use checker::jsonl::Fault;
use checker::jsonl::Kind;
use checker::jsonl::Results;
use checker::messages::Anomaly;
use checker::messages::Op;

/// Operations drawn in the timeline at most (Jepsen caps it too); beyond, a sample.
const TIMELINE_MAX_OPS: usize = 10_000;
const PLOT_W: f64 = 1000.0;
const PLOT_H: f64 = 220.0;
const FAULT_COLORS: [(&str, &str); 7] = [
    ("partition", "#f4c7c3"),
    ("kill", "#d7c3f4"),
    ("pause", "#c3d9f4"),
    ("clock", "#f4ecc3"),
    ("packet", "#c3f4d4"),
    ("power-loss", "#b9a3d9"),
    ("disk-full", "#e0c9a6"),
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fault_color(name: &str) -> &'static str {
    FAULT_COLORS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("#dddddd", |(_, c)| c)
}

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Ok => "#5cb85c",
        Kind::Fail => "#d9534f",
        Kind::Info => "#f0ad4e",
        Kind::Invoke => "#999999",
    }
}

/// Shaded fault windows along a horizontal time axis.
fn bands_x(out: &mut String, faults: &[Fault], end_us: u64, x0: f64, w: f64, h: f64) {
    for f in faults {
        let a = x0 + w * f.start_us as f64 / end_us as f64;
        let b = x0 + w * f.end_us.unwrap_or(end_us) as f64 / end_us as f64;
        let _ = write!(
            out,
            r#"<rect x="{a:.1}" y="0" width="{:.1}" height="{h}" fill="{}" opacity="0.6"><title>{} {}</title></rect>"#,
            (b - a).max(1.0),
            fault_color(&f.name),
            esc(&f.name),
            esc(&f.detail.to_string())
        );
    }
}

fn axis(out: &mut String, x0: f64, end_us: u64, y: f64) {
    let secs = end_us / 1_000_000;
    let step = (secs / 10).max(1);
    for s in (0..=secs).step_by(step as usize) {
        let x = x0 + PLOT_W * (s * 1_000_000) as f64 / end_us as f64;
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{y}" font-size="10" text-anchor="middle">{s}s</text>"#
        );
    }
}

/// An SVG plot's opening, with the fault windows shaded.
fn plot_start(faults: &[Fault], end_us: u64, x0: f64) -> String {
    let mut s = format!(
        r#"<svg width="{}" height="{}" xmlns="http://www.w3.org/2000/svg">"#,
        PLOT_W + 60.0,
        PLOT_H + 30.0
    );
    bands_x(&mut s, faults, end_us, x0, PLOT_W, PLOT_H);
    s
}

/// OK sends and first deliveries per second.
fn throughput(ops: &[Op], faults: &[Fault], end_us: u64) -> String {
    let secs = (end_us / 1_000_000 + 1) as usize;
    let mut sent = vec![0u32; secs];
    let mut got = vec![0u32; secs];
    let mut seen = std::collections::BTreeSet::new();
    for op in ops {
        match op {
            Op::Send {
                completed, result, ..
            } if *result == checker::messages::Result3::Ok => {
                sent[(*completed / 1_000_000) as usize % secs] += 1;
            }
            Op::Receive {
                completed, msgs, ..
            } => {
                for m in msgs {
                    if seen.insert(m.id.as_str()) {
                        got[(*completed / 1_000_000) as usize % secs] += 1;
                    }
                }
            }
            _ => {}
        }
    }
    let max = sent.iter().chain(&got).copied().max().unwrap_or(1).max(1) as f64;
    let x0 = 40.0;
    let mut s = plot_start(faults, end_us, x0);
    for (series, c) in [(&sent, "#337ab7"), (&got, "#5cb85c")] {
        let pts: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = x0 + PLOT_W * (i as f64 * 1e6 + 5e5) / end_us as f64;
                format!("{x:.1},{:.1}", PLOT_H - PLOT_H * f64::from(*v) / max)
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
    }
    let _ = write!(
        s,
        r#"<text x="0" y="12" font-size="10">{max:.0}/s</text><text x="0" y="{PLOT_H}" font-size="10">0</text>"#
    );
    axis(&mut s, x0, end_us, PLOT_H + 20.0);
    s.push_str("</svg>");
    s
}

/// Latency of sends and acks against completion time (log scale, 0.1 ms … 10 s).
fn latency(ops: &[Op], faults: &[Fault], end_us: u64) -> String {
    let x0 = 40.0;
    let mut s = plot_start(faults, end_us, x0);
    let y_of = |us: u64| {
        let l = (us.max(100) as f64).log10().min(7.0);
        PLOT_H - PLOT_H * (l - 2.0) / 5.0
    };
    for (label, us) in [
        ("0.1ms", 100),
        ("1ms", 1_000),
        ("10ms", 10_000),
        ("100ms", 100_000),
        ("1s", 1_000_000),
        ("10s", 10_000_000),
    ] {
        let y = y_of(us);
        let _ = write!(
            s,
            r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="0" y="{:.1}" font-size="10">{label}</text>"##,
            x0 + PLOT_W,
            y + 3.0
        );
    }
    let mut n = 0;
    for op in ops {
        if !matches!(op, Op::Send { .. } | Op::Ack { .. }) {
            continue;
        }
        n += 1;
        if n > 20_000 {
            break;
        }
        let (inv, done) = jsonl::span(op);
        let x = x0 + PLOT_W * done as f64 / end_us as f64;
        let shape = if matches!(op, Op::Send { .. }) {
            0.0
        } else {
            1.0
        };
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{:.1}" r="{}" fill="{}" opacity="0.5"/>"#,
            y_of(done.saturating_sub(inv)),
            1.5 + shape,
            color(jsonl::outcome(op))
        );
    }
    axis(&mut s, x0, end_us, PLOT_H + 20.0);
    s.push_str("</svg>");
    s
}

/// One column per process, one box per operation; fault windows across every column.
fn timeline(ops: &[Op], faults: &[Fault], end_us: u64) -> String {
    // Over the cap, every k-th operation, so the whole run stays visible.
    let stride = ops.len().div_ceil(TIMELINE_MAX_OPS).max(1);
    let drawn: Vec<&Op> = ops.iter().step_by(stride).collect();
    let mut procs: BTreeMap<String, usize> = BTreeMap::new();
    for op in &drawn {
        let n = procs.len();
        procs.entry(jsonl::process(op)).or_insert(n);
    }
    let col = 70.0;
    let height = 3000.0;
    let y_of = |us: u64| 20.0 + height * us as f64 / end_us as f64;
    let width = col * procs.len() as f64 + 50.0;
    let mut s = format!(
        r#"<svg width="{width}" height="{}" xmlns="http://www.w3.org/2000/svg">"#,
        height + 30.0
    );
    for f in faults {
        let (a, b) = (y_of(f.start_us), y_of(f.end_us.unwrap_or(end_us)));
        let _ = write!(
            s,
            r#"<rect x="0" y="{a:.1}" width="{width}" height="{:.1}" fill="{}" opacity="0.5"><title>{} {}</title></rect>"#,
            (b - a).max(1.0),
            fault_color(&f.name),
            esc(&f.name),
            esc(&f.detail.to_string())
        );
    }
    for (p, i) in &procs {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="12" font-size="11" text-anchor="middle">{}</text>"#,
            50.0 + col * *i as f64 + col / 2.0,
            esc(p)
        );
    }
    for sec in (0..=end_us / 1_000_000).step_by(5) {
        let _ = write!(
            s,
            r#"<text x="2" y="{:.1}" font-size="10">{sec}s</text>"#,
            y_of(sec * 1_000_000)
        );
    }
    for op in drawn {
        let i = procs[&jsonl::process(op)];
        let (inv, done) = jsonl::span(op);
        let (a, b) = (y_of(inv), y_of(done));
        let value = serde_json::to_string(op).unwrap_or_default();
        let title: String = value.chars().take(400).collect();
        let _ = write!(
            s,
            r#"<rect x="{:.1}" y="{a:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
            50.0 + col * i as f64 + 4.0,
            col - 8.0,
            (b - a).max(1.0),
            color(jsonl::outcome(op)),
            esc(&title)
        );
    }
    s.push_str("</svg>");
    s
}

fn summary(name: &str, faults: &[Fault], results: &Results) -> String {
    let valid = results.valid.to_string();
    let cls = if results.valid == serde_json::json!(true) {
        "ok"
    } else {
        "bad"
    };
    let mut s = format!(
        "<h1>{}</h1><p class=\"{cls}\">valid: <b>{}</b> — {}</p><table><tr><th>anomaly</th><th>count</th></tr>",
        esc(name),
        esc(&valid),
        esc(&results.valid_reason)
    );
    for (k, v) in &results.anomalies {
        let bad = results.bad_anomaly_types.contains(k);
        let _ = write!(
            s,
            "<tr><td class=\"{}\">{}</td><td>{}</td></tr>",
            if bad { "bad" } else { "" },
            esc(k),
            v.count
        );
    }
    s.push_str("</table><h2>Operations</h2><table>");
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&results.stats) {
        for (k, v) in m {
            let _ = write!(s, "<tr><td>{}</td><td>{v}</td></tr>", esc(&k));
        }
    }
    s.push_str("</table><h2>Faults</h2><table><tr><th>start</th><th>end</th><th>nemesis</th><th>what</th></tr>");
    for f in faults {
        let _ = write!(
            s,
            "<tr><td>{:.1}s</td><td>{}</td><td style=\"background:{}\">{}</td><td><code>{}</code></td></tr>",
            f.start_us as f64 / 1e6,
            f.end_us
                .map_or("—".into(), |e| format!("{:.1}s", e as f64 / 1e6)),
            fault_color(&f.name),
            esc(&f.name),
            esc(&f.detail.to_string())
        );
    }
    s.push_str("</table>");
    s
}

/// The whole report.
pub fn render(
    name: &str,
    ops: &[Op],
    faults: &[Fault],
    anomalies: &[Anomaly],
    results: &Results,
    end_us: u64,
) -> String {
    let end_us = end_us.max(1);
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>RaftMQ jepsen report</title><style>body{font-family:sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}.ok{color:#2a7a2a}.bad{color:#b52b27;font-weight:bold}code{font-size:12px}li{font-family:monospace;font-size:12px}</style></head><body>",
    );
    s.push_str(&summary(name, faults, results));
    s.push_str("<h2>Throughput (blue: acknowledged sends/s, green: first deliveries/s)</h2>");
    s.push_str(&throughput(ops, faults, end_us));
    s.push_str("<h2>Latency (small: sends, large: acks; green ok, red fail, orange unknown)</h2>");
    s.push_str(&latency(ops, faults, end_us));
    s.push_str("<h2>Anomalies</h2>");
    if anomalies.is_empty() {
        s.push_str("<p class=\"ok\">none</p>");
    }
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in anomalies {
        by.entry(a.kind).or_default().push(&a.detail);
    }
    for (k, v) in by {
        let _ = write!(s, "<h3 class=\"bad\">{} ({})</h3><ul>", esc(k), v.len());
        for d in v.iter().take(jsonl::MAX_EXAMPLES) {
            let _ = write!(s, "<li>{}</li>", esc(d));
        }
        s.push_str("</ul>");
    }
    let _ = write!(
        s,
        "<h2>Timeline ({} operations{})</h2>",
        ops.len(),
        match ops.len().div_ceil(TIMELINE_MAX_OPS) {
            0 | 1 => String::new(),
            k => format!(", one in {k} drawn"),
        }
    );
    s.push_str(&timeline(ops, faults, end_us));
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use checker::messages::Result3;

    use super::*;

    #[test]
    fn a_report_shows_the_verdict_the_faults_and_the_anomalies() {
        let ops = vec![Op::Send {
            id: "p0-0".into(),
            body: b"p0-0:x".to_vec(),
            group: None,
            invoked: 1_000,
            completed: 2_000,
            result: Result3::Ok,
            pos: None,
            may_repeat: false,
            topic: None,
        }];
        let faults = vec![Fault {
            name: "partition".into(),
            detail: serde_json::json!({"shape": "isolate-leader"}),
            start_us: 500,
            end_us: Some(1_500),
        }];
        let anomalies = vec![Anomaly {
            kind: "lost",
            detail: "p0-0 was acknowledged but never delivered".into(),
        }];
        let results = jsonl::results(&anomalies, Default::default(), None);
        let html = render("t<1>", &ops, &faults, &anomalies, &results, 3_000_000);
        assert!(html.contains("t&lt;1&gt;"), "names are escaped");
        assert!(html.contains("valid: <b>false</b>"));
        assert!(html.contains("isolate-leader"));
        assert!(html.contains("p0-0 was acknowledged but never delivered"));
        assert!(html.contains("<svg") && !html.contains("<script"));
    }
}
