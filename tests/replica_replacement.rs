//! Replacing a failed disk (issue 12, item 5), the way docs/operations.md tells an operator to,
//! on a real three-process cluster under load: node 3 is killed and its data directory wiped;
//! started again like that, before its removal, it is refused and exits (raft-store's fence);
//! `raftmq admin replica remove` takes it out of the group, it is started again with
//! `raftmq broker --rejoin`, and `raftmq admin replica add` copies the log to it and makes it a
//! voter. Then node 1 is killed: the group must go on with nodes 2 and 3, so node 3 votes and
//! counts towards commits, and every message acknowledged during all of it is received.
//! (The repair of a damaged state, which reads back the same way, is in tests/state_repair.rs.)
#![cfg(not(madsim))]

mod common;
#[path = "support/retained.rs"]
mod retained;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use common::Cluster;
use retained::*;

const BASE: u16 = 19900;

/// [`send_until`] to topic `Replace`, recording the ids.
async fn load(endpoints: String, acked: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) {
    send_until(endpoints, "Replace", 512, stop, |id, _| {
        acked.lock().unwrap().push(id)
    })
    .await
}

/// A producer sending through `endpoints` on a runtime of its own, until `stop`.
struct Load {
    rt: tokio::runtime::Runtime,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    sender: tokio::task::JoinHandle<()>,
}

fn start_load(endpoints: String) -> Load {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = rt.spawn(load(endpoints, acked.clone(), stop.clone()));
    Load {
        rt,
        acked,
        stop,
        sender,
    }
}

/// How many endpoints each queue of `topic`'s route has, as the node or nameserver at `addr`
/// answers the Rust client (which gets every member; other clients get one per queue).
fn route_endpoints(addr: &str, topic: &str) -> Result<Vec<usize>, String> {
    use raftmq_proto::v2 as pb;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut c = pb::messaging_service_client::MessagingServiceClient::new(channel);
        let mut req = tonic::Request::new(pb::QueryRouteRequest {
            topic: Some(pb::Resource {
                name: topic.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let meta = req.metadata_mut();
        meta.insert("x-mq-client-id", "route-check".parse().unwrap());
        meta.insert("x-mq-language", "RUST".parse().unwrap());
        let r = c
            .query_route(req)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        if r.status.as_ref().map(|s| s.code) != Some(pb::Code::Ok as i32) {
            return Err(format!("{:?}", r.status));
        }
        Ok(r.message_queues
            .iter()
            .map(|q| {
                q.broker
                    .as_ref()
                    .and_then(|b| b.endpoints.as_ref())
                    .map_or(0, |e| e.addresses.len())
            })
            .collect())
    })
}

fn acked_len(acked: &Mutex<Vec<String>>) -> usize {
    acked.lock().unwrap().len()
}

#[test]
fn a_replica_whose_disk_was_replaced_rejoins_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), BASE, 1);
    let endpoints = (0..3).map(|i| c.node(i)).collect::<Vec<_>>().join(",");
    let Load {
        rt,
        acked,
        stop,
        sender,
    } = start_load(endpoints);
    wait_until("sends acknowledged", Duration::from_secs(30), || {
        acked_len(&acked) >= 300
    });

    // Node 3's disk fails: the process dies and its data directory is gone.
    c.kill(2);
    std::fs::remove_dir_all(c.data_dir(2)).unwrap();
    let before = acked_len(&acked);
    wait_until(
        "sends go on with two nodes",
        Duration::from_secs(30),
        || acked_len(&acked) >= before + 200,
    );

    // Started empty before its removal (the order docs/operations.md forbids), it must not
    // take part: its peers still count it as a voter that held entries. It refuses, says how
    // to rejoin, and exits non-zero; with --rejoin it waits for its removal instead.
    c.restart(2);
    let status = c
        .wait_exit(2, Duration::from_secs(20))
        .expect("a replica that lost its data is refused and exits");
    assert!(!status.success(), "{status}");
    let log = c.log(2);
    assert!(
        log.contains("because it lost its data") && log.contains("--rejoin"),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    std::fs::remove_dir_all(c.data_dir(2)).unwrap();
    c.restart_with(2, &["--rejoin"]);
    wait_until(
        "the rejoining node waits for its removal",
        Duration::from_secs(20),
        || {
            c.log(2)
                .contains("started to rejoin, but the group still counts it")
        },
    );
    assert!(c.all_alive(), "it waits rather than exits");
    c.kill(2);
    let _ = std::fs::remove_dir_all(c.data_dir(2));

    // A change not signed with the cluster secret is refused: the CLI will not send it, and
    // the node refuses one signed with another secret.
    let (ok, out) = c.admin_raw(1, &["replica", "remove", "--group", "1", "--node", "3"]);
    assert!(!ok && out.contains("--cluster-secret-file"), "{out}");
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "not-the-cluster-secret-at-all").unwrap();
    let (ok, out) = c.admin_raw(
        1,
        &[
            "--cluster-secret-file",
            wrong.to_str().unwrap(),
            "replica",
            "remove",
            "--group",
            "1",
            "--node",
            "3",
        ],
    );
    assert!(
        !ok && out.contains("must be signed with the cluster secret"),
        "{out}"
    );

    // Adding it back while it is still a voter is refused, with the reason.
    let (ok, out) = c.admin(0, &["replica", "add", "--group", "1", "--node", "3"]);
    assert!(!ok && out.contains("already a voter"), "{out}");
    // Removing a live node while node 3 is down is refused: the voters left (1 and 3) would
    // have only one that answers, and the group could not commit until node 3 returned.
    let (ok, out) = c.admin(0, &["replica", "remove", "--group", "1", "--node", "2"]);
    assert!(!ok && out.contains("could not commit"), "{out}");
    let (ok, out) = c.admin(0, &["status"]);
    assert!(ok && out.contains("voters [1, 2, 3]\n"), "{out}");

    // 1. Remove it from the group (run on any node; the leader does it).
    let (ok, out) = c.admin(1, &["replica", "remove", "--group", "1", "--node", "3"]);
    assert!(ok, "replica remove: {out}");
    wait_until("node 1 sees voters [1, 2]", Duration::from_secs(10), || {
        c.admin(0, &["status"]).1.contains("voters [1, 2]\n")
    });

    // Adding it while it does not run: the learner cannot copy the log, and once the deadline
    // passes the addition is rolled back (a learner that never catches up would hold
    // retention back).
    let (ok, out) = c.admin(
        0,
        &[
            "replica",
            "add",
            "--group",
            "1",
            "--node",
            "3",
            "--timeout-secs",
            "2",
        ],
    );
    assert!(!ok && out.contains("removed"), "{out}");
    wait_until("the learner is gone again", Duration::from_secs(10), || {
        let out = c.admin(0, &["status"]).1;
        out.contains("voters [1, 2]\n") && !out.contains("learners [3]")
    });

    // 2. Start it with an empty directory, waiting to be added back.
    c.restart_with(2, &["--rejoin"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(c.all_alive(), "the rejoining node must wait, not exit");

    // 3. Add it: it copies the log as a learner, then votes.
    let before = acked_len(&acked);
    let (ok, out) = c.admin(0, &["replica", "add", "--group", "1", "--node", "3"]);
    assert!(ok, "replica add: {out}");
    assert!(out.contains("is a voter"), "{out}");
    wait_until(
        "node 3 sees voters [1, 2, 3]",
        Duration::from_secs(10),
        || c.admin(2, &["status"]).1.contains("voters [1, 2, 3]\n"),
    );
    wait_until(
        "sends go on after the addition",
        Duration::from_secs(30),
        || acked_len(&acked) >= before + 200,
    );

    // Node 1 dies: the group goes on only if node 3 votes and counts towards commits.
    c.kill(0);
    let before = acked_len(&acked);
    wait_until(
        "sends go on with nodes 2 and 3",
        Duration::from_secs(60),
        || acked_len(&acked) >= before + 200,
    );
    stop.store(true, Ordering::SeqCst);
    rt.block_on(sender).unwrap();

    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let got = rt.block_on(common::receive_all(
        client_config(&format!("{},{}", c.node(1), c.node(2))),
        "Replace",
        "ReplaceCheck",
        acked.len(),
        false,
    ));
    let missing: Vec<&String> = acked.difference(&got).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages not received, e.g. {missing:?}",
        acked.difference(&got).count(),
        acked.len()
    );
    println!(
        "replacement: {} messages acknowledged through the replacement, all received",
        acked.len()
    );
}

/// The other side of the fence: a node started for the first time after the rest of a new
/// cluster formed its groups also starts with an empty log, but no peer saw it acknowledge
/// anything, so it takes part (without bootstrapping a group of its own) and the leaders copy
/// the log to it.
#[test]
fn a_node_started_late_in_a_new_cluster_takes_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_first(dir.path(), 19000, 2, 2);
    let Load {
        rt,
        acked,
        stop,
        sender,
    } = start_load(format!("{},{}", c.node(0), c.node(1)));
    wait_until("sends acknowledged", Duration::from_secs(30), || {
        acked_len(&acked) >= 200
    });
    c.restart(2);
    // It copies both groups' logs and then counts: with node 1 gone, only 2 and 3 are left.
    wait_until(
        "node 3 follows both groups",
        Duration::from_secs(20),
        || {
            let (ok, out) = c.admin(2, &["status"]);
            ok && out.matches("voters [1, 2, 3]\n").count() == 2 && !out.contains("stopped")
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    c.kill(0);
    let before = acked_len(&acked);
    wait_until(
        "sends go on with nodes 2 and 3",
        Duration::from_secs(60),
        || acked_len(&acked) >= before + 100,
    );
    assert!(c.all_alive(), "{}", c.log(2));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(sender).unwrap();
}

#[test]
fn a_cluster_still_forming_routes_to_its_nodes() {
    // Node 1 starts alone in a new cluster: its replicas probe their peers and know no
    // membership yet. The nameserver's route must still name it: the official clients cache a
    // route for 30 s, and one without endpoints failed every send to that broker
    // (tests/cluster.rs in CI, when probing replicas registered before the leaders did).
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::configure(dir.path(), 19050, 1);
    c.restart(0);
    let mut route = Vec::new();
    wait_until(
        "the nameserver routes the topic",
        Duration::from_secs(20),
        || {
            route = route_endpoints(&c.nameserver(), "Forming").unwrap_or_default();
            !route.is_empty()
        },
    );
    assert!(route.iter().all(|n| *n == 1), "{route:?}");
    c.restart(1);
    c.restart(2);
    c.wait_all_led();
    wait_until("routes name all three", Duration::from_secs(20), || {
        route_endpoints(&c.nameserver(), "Forming")
            .is_ok_and(|r| !r.is_empty() && r.iter().all(|n| *n == 3))
    });
}

/// Replacing a failed disk after retention has deleted the start of the log (issue 12, item
/// 5): the log alone can no longer bring a new replica up, so the node started with an empty
/// directory and `--rejoin` copies a peer's snapshot, consume queues and retained log before
/// it joins (raft-store's seed). It is then added, becomes the leader (it is the preferred
/// one), node 1 is killed, and every retained message is read back through it: each offset
/// from the queue's first retained one to its end holds the message acknowledged there.
#[test]
fn a_replica_replaced_after_retention_copies_the_retained_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::configure_with(
        dir.path(),
        19200,
        1,
        |_| 3,
        "[storage]\nsegment_mb = 0.125\nsnapshot_every = 200\n\n[retention]\nmax_mb_per_group = 1\ncheck_secs = 0.5\n",
    );
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_all_led();
    let endpoints = (0..3).map(|i| c.node(i)).collect::<Vec<_>>().join(",");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = rt.spawn(positioned_load(
        endpoints.clone(),
        acked.clone(),
        stop.clone(),
    ));
    wait_until(
        "retention deletes the start of the log",
        Duration::from_secs(120),
        || {
            let (ok, out) = c.admin(0, &["status"]);
            ok && out.contains("older deleted")
        },
    );
    // Each replica purges its log at its next snapshot (every 200 entries).
    std::thread::sleep(Duration::from_secs(3));

    // Node 3's disk fails; it is removed, and started empty with --rejoin: it copies.
    c.kill(2);
    std::fs::remove_dir_all(c.data_dir(2)).unwrap();
    // It led (it is preferred): the removal runs on the next leader.
    let mut out = String::new();
    wait_until("node 3 is removed", Duration::from_secs(30), || {
        let (ok, o) = c.admin(0, &["replica", "remove", "--group", "1", "--node", "3"]);
        out = o;
        ok
    });
    // Without the copy (a node that never held the log), the addition is refused up front.
    let (ok, out) = c.admin(
        0,
        &[
            "replica",
            "add",
            "--group",
            "1",
            "--node",
            "3",
            "--timeout-secs",
            "20",
        ],
    );
    assert!(!ok && out.contains("--rejoin"), "{out}");
    c.restart_with(2, &["--rejoin"]);
    wait_until("node 3 copies from a peer", Duration::from_secs(60), || {
        c.log(2)
            .contains("copied the snapshot, consume queues and retained log")
    });
    // The copy is made before the node listens: the first tries may find it not yet up.
    let start = Instant::now();
    loop {
        let (ok, out) = c.admin(
            0,
            &[
                "replica",
                "add",
                "--group",
                "1",
                "--node",
                "3",
                "--timeout-secs",
                "20",
            ],
        );
        if ok {
            break;
        }
        assert!(
            out.contains("does not answer") && start.elapsed() < Duration::from_secs(30),
            "replica add: {out}\n{}",
            tail(&c.log(2))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    rt.block_on(sender).unwrap();
    read_back_through_node_3(&mut c, &rt, &acked.lock().unwrap(), true);
}
