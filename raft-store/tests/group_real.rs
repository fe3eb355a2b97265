//! A 3-replica group on real tokio and tonic over 127.0.0.1 with real disks: elect, replicate,
//! hand leadership over on shutdown, restart from disk and catch up.
#![cfg(not(madsim))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_store::disk::RealDisk;
use raft_store::group::Group;
use raft_store::group::GroupConfig;
use raft_store::group::Role;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::state_machine::App;
use raft_store::types::GroupId;
use raft_store::types::LogIndex;

#[derive(Default)]
struct Recorder(Vec<(u64, Vec<u8>)>);

impl App for Recorder {
    fn apply(&mut self, index: LogIndex, request: &[u8]) -> Result<Vec<u8>, String> {
        self.0.push((index.0, request.to_vec()));
        Ok((self.0.len() as u64).to_le_bytes().to_vec())
    }
    fn snapshot(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(&self.0, bincode::config::standard()).unwrap()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        self.0 = bincode::serde::decode_from_slice(s, bincode::config::standard())
            .map_err(|e| e.to_string())?
            .0;
        Ok(())
    }
}

/// Binds a listener (port 0 picks a free one) and keeps it: picking a port and binding it
/// later races with other sockets, and two picks can even return the same port.
async fn listen(addr: &str) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(addr).await.unwrap()
}

struct Node {
    group: Option<Arc<Group<Recorder>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

async fn start_node(
    id: u64,
    members: &BTreeMap<u64, String>,
    listener: tokio::net::TcpListener,
    dir: &std::path::Path,
) -> Node {
    let registry = Registry::new(raftmq_proto::auth::ClusterKey::insecure_for_tests());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let reg = registry.clone();
    let server = tokio::spawn(async move {
        reg.add_to(&mut tonic::transport::Server::builder(), 64 << 20)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
    });
    let mut cfg = GroupConfig::new(GroupId(1), id, members.clone(), dir.join(format!("n{id}")));
    cfg.snapshot_every = 50; // exercise snapshots too
    let group = Group::start(
        cfg,
        Arc::new(RealDisk::new()),
        Recorder::default(),
        &registry,
        &Channels::new(raftmq_proto::auth::ClusterKey::insecure_for_tests()),
    )
    .await
    .unwrap();
    Node {
        group: Some(Arc::new(group)),
        stop: Some(tx),
        server: Some(server),
    }
}

/// Three replicas on free ports of 127.0.0.1: their addresses by node id, and the nodes.
async fn start_three(dir: &std::path::Path) -> (BTreeMap<u64, String>, Vec<Node>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(listen("127.0.0.1:0").await);
    }
    let members: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start_node(i as u64 + 1, &members, l, dir).await);
    }
    (members, nodes)
}

async fn stop_node(node: &mut Node) {
    let g = Arc::into_inner(node.group.take().unwrap()).expect("sole owner");
    g.shutdown().await.unwrap();
    let _ = node.stop.take().unwrap().send(());
    node.server.take().unwrap().await.unwrap();
}

async fn leader_of(nodes: &[Node]) -> usize {
    for _ in 0..200 {
        for (i, n) in nodes.iter().enumerate() {
            if let Some(g) = &n.group
                && g.metrics().role == Role::Leader
            {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no leader elected within 4 s");
}

async fn wait_applied(nodes: &[Node], index: u64) {
    for _ in 0..500 {
        if nodes
            .iter()
            .filter_map(|n| n.group.as_ref())
            .all(|g| g.metrics().applied.is_some_and(|a| a.0 >= index))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replicas did not apply up to {index}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_fail_over_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let (members, mut nodes) = start_three(dir.path()).await;

    let l = leader_of(&nodes).await;
    let mut last = 0;
    for i in 0..100u32 {
        let p = nodes[l]
            .group
            .as_ref()
            .unwrap()
            .propose(format!("a{i}").into_bytes())
            .await
            .unwrap();
        last = p.index.0;
    }
    wait_applied(&nodes, last).await;

    // Graceful leader shutdown hands leadership over; proposals continue on the new leader.
    let old = l;
    stop_node(&mut nodes[old]).await;
    let l = leader_of(&nodes).await;
    assert_ne!(l, old);
    for i in 0..50u32 {
        let p = nodes[l]
            .group
            .as_ref()
            .unwrap()
            .propose(format!("b{i}").into_bytes())
            .await
            .unwrap();
        last = p.index.0;
    }

    // The stopped replica restarts from its disk and catches up.
    let id = old as u64 + 1;
    let l = listen(&members[&id]).await;
    nodes[old] = start_node(id, &members, l, dir.path()).await;
    wait_applied(&nodes, last).await;

    let states: Vec<Vec<(u64, Vec<u8>)>> = nodes
        .iter()
        .map(|n| n.group.as_ref().unwrap().with_app(|a| a.app.0.clone()))
        .collect();
    assert_eq!(states[0], states[1]);
    assert_eq!(states[1], states[2]);
    let payloads: Vec<String> = states[0]
        .iter()
        .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..100)
        .map(|i| format!("a{i}"))
        .chain((0..50).map(|i| format!("b{i}")))
        .collect();
    assert_eq!(payloads, expected, "every proposal applied once, in order");

    for n in nodes.iter_mut() {
        stop_node(n).await;
    }
}

/// Issue 10: the Raft port took forged Vote/AppendEntries/InstallSnapshot from anyone who
/// reached it, and decoded their payloads unbounded. Now a request without the cluster
/// credential (or signed with another secret, or changed after signing) is refused before it
/// is decoded, and the group neither changes term nor stops committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_raft_requests_are_refused_and_change_nothing() {
    use raftmq_proto::auth::ClusterKey;
    use raftmq_proto::raft::AppendFrame;
    use raftmq_proto::raft::RaftRequest;
    use raftmq_proto::raft::SnapshotChunk;
    use raftmq_proto::raft::raft_service_client::RaftServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let (members, mut nodes) = start_three(dir.path()).await;
    let l = leader_of(&nodes).await;
    let term = nodes[l].group.as_ref().unwrap().metrics().term;

    let probe = vec![0x00, 0xFD, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00];
    let forged_vote = {
        // A vote for node 9 in a huge term, correctly encoded: the dangerous kind.
        let v = openraft::raft::VoteRequest::<raft_store::types::TypeConfig> {
            vote: raft_store::types::Vote::new(u64::MAX / 2, 9),
            last_log_id: None,
            leadership_transfer: false,
        };
        bincode::serde::encode_to_vec(&v, bincode::config::standard()).unwrap()
    };
    let wrong = ClusterKey::new("not-this-cluster-secret").unwrap();
    for addr in members.values() {
        let mut c = RaftServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        for payload in [probe.clone(), forged_vote.clone()] {
            let req = RaftRequest {
                group: 1,
                payload: payload.clone().into(),
            };
            let e = c.vote(req.clone()).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
            let e = c.append_entries(req.clone()).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
            // Signed with another cluster's secret.
            let body = raftmq_proto::auth::group_body(1, &payload);
            let mut signed = tonic::Request::new(req.clone());
            wrong.attach(
                &mut signed,
                "raft.Vote",
                9,
                raft_store::rt::wall_ms(),
                &body,
            );
            assert_eq!(
                c.vote(signed).await.unwrap_err().code(),
                tonic::Code::Unauthenticated
            );
            // Signed right, then changed.
            let key = ClusterKey::insecure_for_tests();
            let mut changed = tonic::Request::new(RaftRequest {
                group: 1,
                payload: forged_vote.clone().into(),
            });
            key.attach(
                &mut changed,
                "raft.Vote",
                9,
                raft_store::rt::wall_ms(),
                &body,
            );
            if payload != forged_vote {
                assert_eq!(
                    c.vote(changed).await.unwrap_err().code(),
                    tonic::Code::Unauthenticated
                );
            }
        }
        let chunk = SnapshotChunk {
            group: 1,
            header: probe.clone().into(),
            data: vec![0; 1024].into(),
        };
        let e = c
            .install_snapshot(futures::stream::iter(vec![chunk]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);

        // Replication streams: the stream needs the credential, and every frame its own MAC,
        // in its place. A forged AppendEntries in a huge term is the dangerous kind.
        let forged_append = {
            let a = openraft::raft::AppendEntriesRequest::<raft_store::types::TypeConfig> {
                vote: raft_store::types::Vote::new_committed(u64::MAX / 2, 9),
                prev_log_id: None,
                leader_commit: None,
                entries: vec![],
            };
            bincode::serde::encode_to_vec(&a, bincode::config::standard()).unwrap()
        };
        let key = ClusterKey::insecure_for_tests();
        let ts = raft_store::rt::wall_ms();
        let frame = |k: &ClusterKey, seq: u64, tag_seq: u64| AppendFrame {
            group: 1,
            payload: forged_append.clone().into(),
            seq,
            mac: k
                .frame_tag("raft.AppendStream", 9, ts, tag_seq, 1, &forged_append)
                .into(),
        };
        // No credential: refused at the opening.
        let e = c
            .append_stream(futures::stream::iter(vec![frame(&key, 0, 0)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        // A valid credential, then a frame that does not verify: another secret's MAC, a MAC
        // made for another place, a frame out of its place (as if frame 0 had been dropped).
        let cases = [
            (frame(&wrong, 0, 0), tonic::Code::Unauthenticated),
            (frame(&key, 0, 1), tonic::Code::Unauthenticated),
            (frame(&key, 1, 1), tonic::Code::InvalidArgument),
        ];
        for (bad, code) in cases {
            let mut req = tonic::Request::new(futures::stream::iter(vec![bad]));
            key.attach(&mut req, "raft.AppendStream", 9, ts, &[]);
            let mut answers = c.append_stream(req).await.unwrap().into_inner();
            let e = answers.message().await.unwrap_err();
            assert_eq!(e.code(), code, "{e}");
        }
    }

    // Nothing changed: same leader, same term, and it still commits.
    assert_eq!(leader_of(&nodes).await, l);
    assert_eq!(nodes[l].group.as_ref().unwrap().metrics().term, term);
    let p = nodes[l]
        .group
        .as_ref()
        .unwrap()
        .propose(b"after".to_vec())
        .await
        .unwrap();
    wait_applied(&nodes, p.index.0).await;
    for n in nodes.iter_mut() {
        stop_node(n).await;
    }
}

/// Issue 10: a peer's snapshot stream was buffered without bound. A signed stream larger than
/// the registry's limit is refused with RESOURCE_EXHAUSTED; a small one goes on to the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_stream_over_the_limit_is_refused() {
    use raftmq_proto::auth::ClusterKey;
    use raftmq_proto::raft::SnapshotChunk;
    use raftmq_proto::raft::raft_service_client::RaftServiceClient;

    let key = ClusterKey::insecure_for_tests();
    let registry = Registry::new(key.clone()).with_max_snapshot_bytes(1024);
    let listener = listen("127.0.0.1:0").await;
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(registry.service(1 << 20))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    let mut c = RaftServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let send = |chunks: usize| {
        let header = b"not decoded before the size check".to_vec();
        let body = raftmq_proto::auth::group_body(1, &header);
        let mut all = vec![SnapshotChunk {
            group: 1,
            header: header.into(),
            data: vec![0; 512].into(),
        }];
        for _ in 1..chunks {
            all.push(SnapshotChunk {
                group: 0,
                header: Default::default(),
                data: vec![0; 512].into(),
            });
        }
        let mut req = tonic::Request::new(futures::stream::iter(all));
        key.attach(
            &mut req,
            "raft.InstallSnapshot",
            2,
            raft_store::rt::wall_ms(),
            &body,
        );
        req
    };
    let e = c.install_snapshot(send(4)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    // Within the limit it reaches the registry (which hosts no group 1 here).
    let r = c.install_snapshot(send(2)).await.unwrap().into_inner();
    assert!(r.error.contains("no replica of group 1"), "{r:?}");
    server.abort();
}
