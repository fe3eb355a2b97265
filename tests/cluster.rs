//! A real three-process cluster with a nameserver on 127.0.0.1-3: the official Python producer
//! sends continuously through the nameserver while the leader process is SIGKILLed (every
//! acknowledged message is then consumed at least once; duplicates are counted) or SIGTERMed
//! (a retrying client sees no failed send); scheduled messages outlive a leader SIGKILL.
#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::Cluster;
use common::python_background;
use common::run_ok;

fn consume_all(endpoint: &str, ids: &str, group: &str) {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python/interop_test.py");
    run_ok(
        "python consume-at-least",
        std::process::Command::new(common::python())
            .arg(script)
            .args([
                "consume-at-least",
                "--topic",
                "Failover",
                "--group",
                group,
                "--ids",
                ids,
                "--run",
                "failover",
                "--endpoint",
                endpoint,
            ])
            .env("HOME", std::env::temp_dir()),
    );
}

#[test]
fn sigkill_of_the_leader_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 18500, 3);
    let ids = dir.path().join("ids.txt");
    let ids = ids.to_str().unwrap().to_string();
    let producer = python_background(
        &c.nameserver(),
        &[
            "produce-for",
            "--seconds",
            "25",
            "--topic",
            "Failover",
            "--ids",
            &ids,
            "--run",
            "failover",
        ],
    );
    std::thread::sleep(Duration::from_secs(7));
    let victim = c.leader_of(1).expect("group 1 has a leader");
    println!("SIGKILL node {}", victim + 1);
    c.kill(victim);
    std::thread::sleep(Duration::from_secs(6));
    c.restart(victim);
    let out = producer.join().unwrap();
    println!(
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );
    c.wait_all_led();
    consume_all(&c.nameserver(), &ids, "FailoverKill");
    // Group g prefers node g: once the restarted node is caught up, it leads again.
    let start = std::time::Instant::now();
    while (1..=3).any(|g| c.leader_of(g) != Some(g as usize - 1)) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "leadership did not return to the preferred nodes: {:?}",
            (1..=3).map(|g| c.leader_of(g)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_of_the_leader_fails_no_send() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 18600, 3);
    let ids = dir.path().join("ids.txt");
    let ids = ids.to_str().unwrap().to_string();
    let producer = python_background(
        &c.nameserver(),
        &[
            "produce-for",
            "--seconds",
            "20",
            "--topic",
            "Failover",
            "--ids",
            &ids,
            "--run",
            "failover",
            "--no-failures",
        ],
    );
    std::thread::sleep(Duration::from_secs(6));
    let victim = c.leader_of(1).expect("group 1 has a leader");
    println!("SIGTERM node {}", victim + 1);
    c.terminate(victim);
    std::thread::sleep(Duration::from_secs(5));
    c.restart(victim);
    producer.join().unwrap();
    c.wait_all_led();
    consume_all(&c.nameserver(), &ids, "FailoverTerm");
}

/// Scheduled messages through the nameserver (the Python SDK sends recalls to its access
/// point, which forwards them to the handle's group) while a leader is SIGKILLed before they
/// are due: the new leader fires the dead one's timers, none early, none twice, none lost,
/// recalled ones never (issue 14).
#[test]
fn scheduled_messages_outlive_a_leader_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 18700, 3);
    let consumer = python_background(
        &c.nameserver(),
        &[
            "delay",
            "--count",
            "150",
            "--delay-seconds",
            "12",
            "--topic",
            "Scheduled",
            "--group",
            "ScheduledGroup",
        ],
    );
    // The sends take a few seconds; the kill comes after them, before the messages are due.
    std::thread::sleep(Duration::from_secs(8));
    let victim = c.leader_of(1).expect("group 1 has a leader");
    println!("SIGKILL node {}", victim + 1);
    c.kill(victim);
    std::thread::sleep(Duration::from_secs(8));
    c.restart(victim);
    let out = consumer.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains("PASS"), "{text}");
}
