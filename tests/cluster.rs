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

/// Kept transactions (`[transactions] after_max = "keep"`, issue 15): a transaction whose
/// producer never knows is checked back `max_checks` times, then kept, undecided and no longer
/// checked; it stays so, with its count, through a SIGKILL of the leader, and waits for an
/// operator: `raftmq admin tx commit` delivers it once, `rollback` discards the other.
#[test]
fn kept_transactions_outlive_a_leader_sigkill_until_an_operator_decides() {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::time::Instant;

    use raftmq_client::ClientConfig;
    use raftmq_client::Filter;
    use raftmq_client::Message;
    use raftmq_client::Producer;
    use raftmq_client::SimpleConsumer;
    use raftmq_client::TransactionResolution;

    let dir = tempfile::tempdir().unwrap();
    let base = 18800;
    let keep = "[transactions]\ncheck_after_secs = 1\ncheck_interval_secs = 1\nmax_checks = 2\n\
                after_max = \"keep\"\n";
    let mut c = Cluster::configure_with(dir.path(), base, 1, |_| 1, keep);
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_all_led();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = ClientConfig::new(c.nameserver());
    config.request_timeout = Duration::from_secs(5);
    config.long_polling_timeout = Duration::from_secs(1);
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    let (p, ids) = rt.block_on(async {
        let p = Producer::builder(config.clone())
            .topics(["Kept"])
            .transaction_checker(move |m: &raftmq_client::ReceivedMessage| {
                seen.lock().unwrap().push(m.message_id.clone());
                TransactionResolution::Unknown
            })
            .start()
            .await
            .unwrap();
        let mut ids = Vec::new();
        for body in [b"kept-a".as_slice(), b"kept-b"] {
            let mut tx = p.begin_transaction();
            let r = tx.send(Message::new("Kept", body.to_vec())).await.unwrap();
            ids.push((r.transaction_id.unwrap(), r.message_id));
            drop(tx);
        }
        (p, ids)
    });
    // Listed as kept ("parked") once both checks were made.
    let list = |c: &Cluster, i: usize| -> serde_json::Value {
        let (ok, out) = c.admin(i, &["tx", "list", "--json"]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let kept = |v: &serde_json::Value| -> Vec<(String, u64, bool)> {
        v["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["transaction_id"].as_str().unwrap().to_string(),
                    p["checks"].as_u64().unwrap_or(0),
                    p["parked"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    let leader = c.leader_of(1).unwrap();
    let want: Vec<(String, u64, bool)> = ids.iter().map(|(t, _)| (t.clone(), 2, true)).collect();
    let start = Instant::now();
    while kept(&list(&c, leader)) != want {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never kept: {}",
            list(&c, leader)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let asked_then = asked.lock().unwrap().len();
    assert!(asked_then >= 2, "the checker was asked {asked_then} times");
    println!("SIGKILL node {}", leader + 1);
    c.kill(leader);
    let start = Instant::now();
    let next = loop {
        assert!(start.elapsed() < Duration::from_secs(15), "no new leader");
        if let Some(l) = c.leader_of(1).filter(|l| *l != leader) {
            break l;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Still kept, and no longer checked, under the new leader.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kept(&list(&c, next)), want);
    assert_eq!(
        asked.lock().unwrap().len(),
        asked_then,
        "a kept one was checked"
    );
    // Decided through the follower (forwarded to the leader) and the leader.
    let other = (0..3).find(|i| *i != leader && *i != next).unwrap();
    let (ok, out) = c.admin(other, &["tx", "commit", &ids[0].0]);
    assert!(ok, "{out}");
    let (ok, out) = c.admin(next, &["tx", "rollback", &ids[1].0]);
    assert!(ok, "{out}");
    assert!(kept(&list(&c, next)).is_empty());
    let got = rt.block_on(async {
        let consumer = SimpleConsumer::builder(config, "KeptGroup")
            .subscribe("Kept", Filter::All)
            .start()
            .await
            .unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(6) {
            for m in consumer.receive(8, Duration::from_secs(30)).await.unwrap() {
                got.push(m.message_id.clone());
                consumer.ack(&m).await.unwrap();
            }
        }
        consumer.shutdown().await;
        p.shutdown().await;
        got
    });
    assert_eq!(got, vec![ids[0].1.clone()]);
}
