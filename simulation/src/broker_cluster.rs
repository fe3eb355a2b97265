//! Three broker nodes on simulated nodes and disks, each serving the real v2 service over
//! madsim-tonic, and the chaos scenario of the data-path issue: producers and consumers use
//! the v2 protocol from a client node while the nemesis kills leaders, cuts power and isolates
//! nodes. Clients do what an official client does without forwarding: on any error they try
//! the next node.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::batcher::BatchConfig;
use broker::core::BrokerCore;
use broker::core::BrokerSettings;
use broker::replica::Replica;
use broker::service::MessagingServer;
use madsim::runtime::Handle;
use raft_store::group::GroupConfig;
use raft_store::group::Role;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::types::GroupId;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
use raftmq_proto::v2::messaging_service_server::MessagingServiceServer;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use crate::queue_checker;
use crate::queue_checker::Op;
use crate::queue_checker::Result3;
use crate::runner::RunResult;
use crate::sim_nodes;
use crate::sim_nodes::Nodes;

const TOPIC: &str = "SimTopic";
const GROUP: &str = "SimGroup";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The simulated broker cluster.
pub struct BrokerCluster {
    /// The nodes.
    pub nodes: Nodes,
    replicas: Vec<Arc<Mutex<Option<Arc<Replica>>>>>,
    start_errors: Arc<Mutex<Vec<String>>>,
}

fn raft_addr(i: usize) -> String {
    format!("{}:5000", sim_nodes::ip(i))
}

/// Node `i`'s v2 endpoint.
pub fn v2_addr(i: usize) -> String {
    format!("{}:8081", sim_nodes::ip(i))
}

impl BrokerCluster {
    /// Boots `n` broker nodes hosting one 3-replica group.
    pub fn new(n: usize) -> Self {
        let members: BTreeMap<u64, String> = (0..n).map(|i| (i as u64 + 1, raft_addr(i))).collect();
        let start_errors = Arc::new(Mutex::new(Vec::new()));
        let replicas: Vec<_> = (0..n).map(|_| Arc::new(Mutex::new(None))).collect();
        let (errs, slots) = (start_errors.clone(), replicas.clone());
        let faults = raft_store::disk::SimDiskFaults {
            sync_latency: (Duration::from_micros(200), Duration::from_millis(4)),
            ..Default::default()
        };
        let nodes = Nodes::new(n, faults, move |i, disk| {
            let (members, errs, slot) = (members.clone(), errs.clone(), slots[i].clone());
            async move {
                *slot.lock().unwrap() = None;
                let registry = Registry::default();
                let raft_listen: SocketAddr = raft_addr(i).parse().unwrap();
                let reg = registry.clone();
                tokio::spawn(async move {
                    let _ = raft_store::server::serve(
                        raft_listen,
                        reg,
                        64 << 20,
                        std::future::pending(),
                    )
                    .await;
                });
                let mut cfg = GroupConfig::new(GroupId(1), i as u64 + 1, members, "/data/g1");
                cfg.snapshot_every = 500;
                cfg.log.segment_bytes = 64 << 10;
                cfg.log.index_interval_bytes = 4 << 10;
                let replica = match Replica::start(
                    cfg,
                    Arc::new(disk),
                    &registry,
                    &Channels::default(),
                    BatchConfig::default(),
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        errs.lock()
                            .unwrap()
                            .push(format!("n{} failed to start: {e}", i + 1));
                        return;
                    }
                };
                *slot.lock().unwrap() = Some(replica.clone());
                let settings = BrokerSettings {
                    leader_wait: Duration::from_millis(500),
                    advertised: Some((sim_nodes::ip(i), 8081)),
                    ..BrokerSettings::default()
                };
                let core = BrokerCore::new(settings, vec![replica]);
                let listen: SocketAddr = v2_addr(i).parse().unwrap();
                let _ = tonic::transport::Server::builder()
                    .add_service(MessagingServiceServer::new(MessagingServer::new(core)))
                    .serve(listen)
                    .await;
            }
        });
        BrokerCluster {
            nodes,
            replicas,
            start_errors,
        }
    }

    /// The node whose replica leads with the highest term.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes.is_alive(i))
            .filter_map(|i| {
                self.replicas[i]
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|r| (i, r.metrics()))
            })
            .filter(|(_, m)| m.role == Role::Leader)
            .max_by_key(|(_, m)| m.term)
            .map(|(i, _)| i)
    }

    /// Startup failures.
    pub fn start_errors(&self) -> Vec<String> {
        self.start_errors.lock().unwrap().clone()
    }
}

/// A v2 client for the cluster that moves to the next node after any error.
#[derive(Clone)]
struct Client {
    clients: Vec<MessagingServiceClient<Channel>>,
    at: usize,
}

fn micros(start: tokio::time::Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

fn req<T>(t: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(t);
    r.metadata_mut()
        .insert("x-mq-client-id", "sim-client".parse().unwrap());
    r
}

fn res(n: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: n.into(),
    })
}

fn ok(s: &Option<pb::Status>) -> bool {
    s.as_ref().is_some_and(|s| s.code == pb::Code::Ok as i32)
}

impl Client {
    fn new(n: usize) -> Self {
        let clients = (0..n)
            .map(|i| {
                let ch = Endpoint::from_shared(format!("http://{}", v2_addr(i)))
                    .unwrap()
                    .connect_lazy();
                MessagingServiceClient::new(ch)
            })
            .collect();
        Client { clients, at: 0 }
    }

    fn next(&mut self) {
        self.at = (self.at + 1) % self.clients.len();
    }

    async fn send(&mut self, id: &str, body: &[u8]) -> Result3 {
        let msg = pb::Message {
            topic: res(TOPIC),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                message_id: id.into(),
                message_type: pb::MessageType::Normal as i32,
                queue_id: (body.len() % 4) as i32,
                ..Default::default()
            }),
            body: body.to_vec().into(),
        };
        let mut c = self.clients[self.at].clone();
        let r = tokio::time::timeout(
            CLIENT_TIMEOUT,
            c.send_message(req(pb::SendMessageRequest {
                messages: vec![msg],
            })),
        )
        .await;
        match r {
            Ok(Ok(resp)) if ok(&resp.get_ref().status) => Result3::Ok,
            _ => {
                self.next();
                Result3::Info
            }
        }
    }

    async fn receive(&mut self) -> Option<Vec<(String, Vec<u8>, u32, String)>> {
        let r = pb::ReceiveMessageRequest {
            group: res(GROUP),
            message_queue: Some(pb::MessageQueue {
                topic: res(TOPIC),
                id: -1,
                ..Default::default()
            }),
            filter_expression: None,
            batch_size: 16,
            invisible_duration: Some(prost_types::Duration {
                seconds: 3,
                nanos: 0,
            }),
            auto_renew: false,
            long_polling_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            attempt_id: None,
        };
        let mut c = self.clients[self.at].clone();
        let call = async {
            let mut stream = c.receive_message(req(r)).await?.into_inner();
            let mut msgs = Vec::new();
            let mut status = None;
            while let Some(x) = stream.message().await? {
                match x.content {
                    Some(pb::receive_message_response::Content::Status(s)) => status = Some(s),
                    Some(pb::receive_message_response::Content::Message(m)) => {
                        let sp = m.system_properties.unwrap_or_default();
                        msgs.push((
                            sp.message_id,
                            m.body.to_vec(),
                            sp.delivery_attempt.unwrap_or(0) as u32,
                            sp.receipt_handle.unwrap_or_default(),
                        ));
                    }
                    _ => {}
                }
            }
            Ok::<_, tonic::Status>((status, msgs))
        };
        match tokio::time::timeout(CLIENT_TIMEOUT, call).await {
            Ok(Ok((Some(s), msgs))) if s.code == pb::Code::Ok as i32 => Some(msgs),
            Ok(Ok((Some(s), _))) if s.code == pb::Code::MessageNotFound as i32 => Some(vec![]),
            _ => {
                self.next();
                None
            }
        }
    }

    async fn ack(&mut self, id: &str, handle: &str) -> Result3 {
        let r = pb::AckMessageRequest {
            group: res(GROUP),
            topic: res(TOPIC),
            entries: vec![pb::AckMessageEntry {
                message_id: id.into(),
                receipt_handle: handle.into(),
                lite_topic: None,
            }],
        };
        let mut c = self.clients[self.at].clone();
        match tokio::time::timeout(CLIENT_TIMEOUT, c.ack_message(req(r))).await {
            Ok(Ok(resp)) if ok(&resp.get_ref().status) => Result3::Ok,
            Ok(Ok(resp))
                if resp
                    .get_ref()
                    .status
                    .as_ref()
                    .is_some_and(|s| s.code == pb::Code::InvalidReceiptHandle as i32) =>
            {
                Result3::Fail
            }
            _ => {
                self.next();
                Result3::Info
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillAny,
    IsolateLeader,
    PowerLossAll,
}

/// The broker chaos scenario (see the module docs). Passes if no acknowledged send is lost,
/// nothing received was never sent, bodies are intact, and no message is handed out again by a
/// receive that started after its ack succeeded.
pub async fn chaos(seed: u64) -> RunResult {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xb0c3);
    let cluster = Arc::new(tokio::sync::Mutex::new(BrokerCluster::new(3)));
    let client_node = Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.0.100".parse().unwrap())
        .build();
    let history: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now();
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));

    // Wait for a leader before any load.
    for _ in 0..200 {
        if cluster.lock().await.leader().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut tasks = Vec::new();
    for p in 0..2u64 {
        let (history, stop) = (history.clone(), stop_producers.clone());
        let mut prng = SmallRng::seed_from_u64(seed.wrapping_add(p * 7919));
        tasks.push(client_node.spawn(async move {
            let mut c = Client::new(3);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("p{p}-{n}");
                n += 1;
                let body = format!("{id}:{}", "x".repeat(prng.random_range(0..64))).into_bytes();
                let result = c.send(&id, &body).await;
                history.lock().unwrap().push(Op::Send { id, body, result });
                tokio::time::sleep(Duration::from_millis(prng.random_range(1..15))).await;
            }
        }));
    }
    for k in 0..2u64 {
        let (history, stop) = (history.clone(), stop_consumers.clone());
        let mut crng = SmallRng::seed_from_u64(seed.wrapping_add(100 + k));
        tasks.push(client_node.spawn(async move {
            let mut c = Client::new(3);
            while !stop.load(Ordering::SeqCst) {
                let invoked = micros(start);
                let Some(msgs) = c.receive().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                history.lock().unwrap().push(Op::Receive {
                    invoked,
                    msgs: msgs
                        .iter()
                        .map(|(id, b, a, _)| (id.clone(), b.clone(), *a))
                        .collect(),
                });
                for (id, _, _, handle) in msgs {
                    // Mostly ack; sometimes let the message expire and come back.
                    if crng.random::<f64>() < 0.15 {
                        continue;
                    }
                    let result = c.ack(&id, &handle).await;
                    history.lock().unwrap().push(Op::Ack {
                        id,
                        completed: micros(start),
                        result,
                    });
                }
            }
        }));
    }

    let faults = [
        Fault::KillLeader,
        Fault::KillAny,
        Fault::IsolateLeader,
        Fault::PowerLossAll,
    ];
    let mut log = Vec::new();
    for _ in 0..rng.random_range(3..8) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2500))).await;
        let fault = faults[rng.random_range(0..faults.len())];
        let down = Duration::from_millis(rng.random_range(200..2500));
        let mut c = cluster.lock().await;
        let leader = c.leader();
        match fault {
            Fault::KillLeader | Fault::KillAny => {
                let i = match (fault, leader) {
                    (Fault::KillLeader, Some(l)) => l,
                    _ => rng.random_range(0..3),
                };
                let power = rng.random::<bool>();
                c.nodes.kill(i);
                drop(c);
                tokio::time::sleep(down).await;
                cluster.lock().await.nodes.restart(i, power);
                log.push(format!(
                    "{fault:?} n{} power_loss={power} down={down:?}",
                    i + 1
                ));
            }
            Fault::IsolateLeader => {
                let i = leader.unwrap_or_else(|| rng.random_range(0..3));
                c.nodes.isolate(i);
                drop(c);
                tokio::time::sleep(down).await;
                cluster.lock().await.nodes.heal(i);
                log.push(format!("isolate n{} for {down:?}", i + 1));
            }
            Fault::PowerLossAll => {
                for i in 0..3 {
                    c.nodes.kill(i);
                }
                drop(c);
                tokio::time::sleep(down).await;
                let mut c = cluster.lock().await;
                for i in 0..3 {
                    c.nodes.restart(i, true);
                }
                log.push(format!("power loss on all for {down:?}"));
            }
        }
    }

    // Heal; stop producing; let consumers drain everything acknowledged.
    stop_producers.store(true, Ordering::SeqCst);
    {
        let c = cluster.lock().await;
        let errors = c.start_errors();
        if !errors.is_empty() {
            return Err(format!(
                "a node failed to restart from its own disk: {errors:?}; faults: {log:?}"
            ));
        }
    }
    let mut leader_found = false;
    for _ in 0..200 {
        if cluster.lock().await.leader().is_some() {
            leader_found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !leader_found {
        return Err(format!("no leader 10 s after healing; faults: {log:?}"));
    }
    // Drained: every acknowledged send was received, and nothing was handed out for longer
    // than the invisible time, so nothing in flight is left to come back. (An ack whose outcome
    // is unknown may well have succeeded, so "every message acked" is not a usable criterion.)
    let quiet = Duration::from_secs(8).as_micros() as u64;
    let drained = async {
        loop {
            {
                let h = history.lock().unwrap();
                let sent: BTreeSet<&str> = h
                    .iter()
                    .filter_map(|o| match o {
                        Op::Send {
                            id,
                            result: Result3::Ok,
                            ..
                        } => Some(id.as_str()),
                        _ => None,
                    })
                    .collect();
                let mut received: BTreeSet<&str> = BTreeSet::new();
                let mut last_delivery = 0;
                for o in h.iter() {
                    if let Op::Receive { invoked, msgs } = o
                        && !msgs.is_empty()
                    {
                        last_delivery = last_delivery.max(*invoked);
                        received.extend(msgs.iter().map(|m| m.0.as_str()));
                    }
                }
                if sent.is_subset(&received) && micros(start).saturating_sub(last_delivery) > quiet
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let drain_ok = tokio::time::timeout(Duration::from_secs(60), drained)
        .await
        .is_ok();
    stop_consumers.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let history = history.lock().unwrap().clone();
    let (anomalies, stats) = queue_checker::check(&history);
    if !anomalies.is_empty() {
        return Err(format!(
            "{} anomalies, first: {:?}; stats {stats:?}; faults: {log:?}",
            anomalies.len(),
            &anomalies[..anomalies.len().min(5)]
        ));
    }
    if !drain_ok {
        let acked: BTreeSet<&str> = history
            .iter()
            .filter_map(|o| match o {
                Op::Ack {
                    id,
                    result: Result3::Ok,
                    ..
                } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let stuck: Vec<String> = history
            .iter()
            .filter_map(|o| match o {
                Op::Send {
                    id,
                    result: Result3::Ok,
                    ..
                } if !acked.contains(id.as_str()) => Some(id.clone()),
                _ => None,
            })
            .take(3)
            .map(|id| {
                let deliveries: Vec<(u64, u32)> = history
                    .iter()
                    .filter_map(|o| match o {
                        Op::Receive { invoked, msgs } => {
                            msgs.iter().find(|m| m.0 == id).map(|m| (*invoked, m.2))
                        }
                        _ => None,
                    })
                    .collect();
                let acks: Vec<(u64, Result3)> = history
                    .iter()
                    .filter_map(|o| match o {
                        Op::Ack {
                            id: a,
                            completed,
                            result,
                        } if *a == id => Some((*completed, *result)),
                        _ => None,
                    })
                    .collect();
                format!("{id}: deliveries (t_us, attempt) {deliveries:?}, acks {acks:?}")
            })
            .collect();
        return Err(format!(
            "consumers did not drain within 60 s; not acked: {stuck:?}; stats {stats:?}; faults: {log:?}"
        ));
    }
    Ok(format!(
        "{} sent ok, {} unknown ({} recovered), {} received, {} redeliveries; {} faults; {} unsynced writes lost",
        stats.sent_ok,
        stats.sent_info,
        stats.recovered,
        stats.received,
        stats.redeliveries,
        log.len(),
        cluster.lock().await.nodes.lost_writes()
    ))
}
