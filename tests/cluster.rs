//! A real three-process cluster with a nameserver on 127.0.0.1-3: the official Python producer
//! sends continuously through the nameserver while the leader process is SIGKILLed (every
//! acknowledged message is then consumed at least once; duplicates are counted) or SIGTERMed
//! (a retrying client sees no failed send); scheduled messages outlive a leader SIGKILL; kept
//! transactions outlive one too; a message sent again through any node is stored once.
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

/// The idempotent producer across groups and nodes (issue 15): a message sent again with the
/// same id through any node is stored once, in the group its id hashes to, and answered with
/// the first copy's receipt. Three groups led by three nodes; each of twelve ids is sent
/// through every node. (A trial that spread plain sends over groups in turn instead of by id
/// was not caught by 146 simulated seeds: resends after unknown outcomes are rare there. It
/// fails this test at once.) Then a SQL92 subscription reads the matching ones.
#[test]
fn a_message_sent_again_through_any_node_is_stored_once() {
    use std::collections::BTreeMap;

    use raftmq_client::ClientConfig;
    use raftmq_client::Filter;
    use raftmq_client::Message;
    use raftmq_client::Producer;
    use raftmq_client::SimpleConsumer;

    let dir = tempfile::tempdir().unwrap();
    let base = 19100;
    let c = Cluster::start(dir.path(), base, 3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = |addr: String| {
            let mut config = ClientConfig::new(addr);
            config.request_timeout = Duration::from_secs(5);
            config.long_polling_timeout = Duration::from_secs(1);
            config
        };
        let mut producers = Vec::new();
        for i in 1..=3 {
            let p = Producer::builder(config(format!("127.0.0.{i}:{base}")))
                .topics(["Once"])
                .start()
                .await
                .unwrap();
            producers.push(p);
        }
        // Per id: (group and queue, offset) of each answer.
        type Where = (Option<(String, i32)>, i64);
        let mut receipts: BTreeMap<String, Vec<Where>> = BTreeMap::new();
        for n in 0..12 {
            let id = format!("once-{n}");
            for p in &producers {
                let m = Message::new("Once", id.clone().into_bytes())
                    .with_message_id(id.clone())
                    .with_property("k", n.to_string());
                let r = p.send(m).await.unwrap();
                receipts
                    .entry(id.clone())
                    .or_default()
                    .push((r.stored_in, r.offset));
            }
        }
        let groups: std::collections::BTreeSet<String> = receipts
            .values()
            .filter_map(|r| r[0].0.as_ref().map(|(g, _)| g.clone()))
            .collect();
        assert!(groups.len() > 1, "twelve ids all in one group: {groups:?}");
        for (id, r) in &receipts {
            assert!(
                r.iter().all(|x| *x == r[0]),
                "{id} was answered with different receipts: {r:?}"
            );
        }
        let consumer = SimpleConsumer::builder(config(c.nameserver()), "OnceGroup")
            .subscribe("Once", Filter::All)
            .start()
            .await
            .unwrap();
        let mut got: BTreeMap<String, u32> = BTreeMap::new();
        let start = std::time::Instant::now();
        // Until every id came, then two more seconds for a copy that should not exist.
        let mut quiet_since = None;
        while start.elapsed() < Duration::from_secs(30) {
            let msgs = consumer
                .receive(32, Duration::from_secs(30))
                .await
                .unwrap_or_default();
            for m in &msgs {
                *got.entry(m.message_id.clone()).or_default() += 1;
                consumer.ack(m).await.unwrap();
            }
            if got.len() == receipts.len() {
                let since = *quiet_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
        }
        let want: BTreeMap<String, u32> = receipts.keys().map(|id| (id.clone(), 1)).collect();
        assert_eq!(got, want, "each id delivered once");
        // A SQL92 subscription across the three groups: a receive reaching a group another
        // node leads is forwarded with its expression, and judged there (issue 16).
        let sql = SimpleConsumer::builder(config(c.nameserver()), "OnceSql")
            .subscribe("Once", Filter::Sql("k >= 6".into()))
            .start()
            .await
            .unwrap();
        let mut got = std::collections::BTreeSet::new();
        let start = std::time::Instant::now();
        while got.len() < 6 && start.elapsed() < Duration::from_secs(30) {
            for m in sql
                .receive(32, Duration::from_secs(30))
                .await
                .unwrap_or_default()
            {
                assert!(got.insert(m.message_id.clone()), "{} twice", m.message_id);
                sql.ack(&m).await.unwrap();
            }
        }
        let want: std::collections::BTreeSet<String> =
            (6..12).map(|n| format!("once-{n}")).collect();
        assert_eq!(got, want, "the SQL92 subscription's messages");
    });
}
