//! `raftmq bench` against `raftmq dev`: an end-to-end sweep (issue 13, item 5) writes its
//! figures as JSON and its latency–throughput plot as a PNG, and every message sent during a
//! step is consumed by its receive loops; `raftmq bench-checkback` sees every transaction it
//! leaves undecided checked once.
#![cfg(not(madsim))]

mod common;

use std::process::Command;

use common::Dev;

#[test]
fn an_end_to_end_sweep_writes_figures_and_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), 20500, &[]);
    let json = dir.path().join("bench.json");
    let png = dir.path().join("bench.png");
    common::run_ok(
        "raftmq bench --mode e2e",
        Command::new(env!("CARGO_BIN_EXE_raftmq")).args([
            "bench",
            "--endpoint",
            &common::endpoint(dev.port),
            "--mode",
            "e2e",
            "--senders",
            "1,4",
            "--consumers",
            "2",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--json",
            json.to_str().unwrap(),
            "--plot",
            png.to_str().unwrap(),
        ]),
    );
    let steps: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(steps.len(), 2, "{steps:?}");
    for (step, senders) in steps.iter().zip([1, 4]) {
        assert_eq!(step["mode"], "e2e");
        assert_eq!(step["senders"], senders);
        let sent = step["sent_per_s"].as_f64().unwrap();
        let consumed = step["consumed_per_s"].as_f64().unwrap();
        assert!(sent > 10.0, "{step}");
        // The consumers keep up with a light load (what the window cut off is the difference).
        assert!(consumed > sent * 0.8, "{step}");
        assert!(step["e2e_ms"]["p50"].as_f64().unwrap() > 0.0, "{step}");
        assert!(step["e2e_ms"]["p99"].as_f64().unwrap() >= step["e2e_ms"]["p50"].as_f64().unwrap());
        assert_eq!(step["errors"], 0, "{step}");
    }
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

/// `raftmq bench-checkback` (issue 15, item 7): every half message it leaves undecided is
/// checked once, after the broker's first-check delay (6 s by default).
#[test]
fn bench_checkback_sees_every_transaction_checked_once() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path(), 20700, &[]);
    let out = common::run_ok(
        "raftmq bench-checkback",
        Command::new(env!("CARGO_BIN_EXE_raftmq")).args([
            "bench-checkback",
            "--endpoint",
            &common::endpoint(dev.port),
            "--transactions",
            "50",
            "--grace",
            "10",
        ]),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("50 of 50 checked, 0 checked twice, 0 never"),
        "{text}"
    );
}
