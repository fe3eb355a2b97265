//! A nameserver and three broker nodes (the real node runner: replicas, forwarding,
//! registration, preferred leaders) on simulated nodes and disks, hosting one or two Raft
//! groups, and the broker chaos scenario: producers and consumers on a client node take routes
//! from the nameserver and use the v2 protocol, as the official clients do (send to a queue's
//! endpoint, move to the next queue after an error, refresh the route now and then), while the
//! nemesis kills leaders, cuts power and isolates nodes. Each seed picks its client: that
//! hand-rolled imitation of the official clients, or RaftMQ's native client
//! (`raftmq-client`), whose exact code runs here under madsim.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use broker::config::GroupPlan;
use broker::config::NodeConfig;
use broker::core::BrokerCore;
use broker::core::BrokerSettings;
use broker::core::NodeAddrs;
use broker::node::Node;
use madsim::runtime::Handle;
use raft_store::group::Role;
use raft_store::log::FlushMode;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
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
const NAMESERVER: &str = "10.0.0.10:9876";

/// The simulated broker cluster: three broker nodes and a nameserver.
pub struct BrokerCluster {
    /// The broker nodes.
    pub nodes: Nodes,
    cores: Vec<Arc<Mutex<Option<Arc<BrokerCore>>>>>,
    start_errors: Arc<Mutex<Vec<String>>>,
    groups: u64,
}

fn raft_addr(i: usize) -> String {
    format!("{}:5000", sim_nodes::ip(i))
}

/// Node `i`'s v2 endpoint.
pub fn v2_addr(i: usize) -> String {
    format!("{}:8081", sim_nodes::ip(i))
}

fn node_config(i: usize, n: usize, groups: u64) -> NodeConfig {
    let peers: BTreeMap<u64, NodeAddrs> = (0..n)
        .map(|j| {
            (
                j as u64 + 1,
                NodeAddrs {
                    raft: raft_addr(j),
                    client: v2_addr(j),
                },
            )
        })
        .collect();
    NodeConfig {
        node_id: i as u64 + 1,
        data_dir: "/data".into(),
        listen: v2_addr(i).parse().unwrap(),
        raft_listen: raft_addr(i).parse().unwrap(),
        peers,
        // Preferred leaders spread over the nodes.
        groups: (1..=groups)
            .map(|g| GroupPlan {
                id: g,
                name: format!("raftmq-g{g}"),
                members: (1..=n as u64).collect(),
                preferred_leader: Some((g - 1) % n as u64 + 1),
            })
            .collect(),
        nameservers: vec![NAMESERVER.into()],
        register_interval: Duration::from_secs(1),
        flush: FlushMode::Sync,
        heartbeat: Duration::from_millis(50),
        election: (Duration::from_millis(200), Duration::from_millis(400)),
        shutdown_drain: Duration::from_millis(500),
        preferred_leader_check: Duration::from_secs(2),
        broker: BrokerSettings {
            leader_wait: Duration::from_secs(2),
            default_queues: 4,
            ..BrokerSettings::default()
        },
        cluster_key: raftmq_proto::auth::ClusterKey::insecure_for_tests(),
    }
}

impl BrokerCluster {
    /// Boots a nameserver and `n` broker nodes hosting `groups` groups of `n` replicas.
    pub fn new(n: usize, groups: u64) -> Self {
        Handle::current()
            .create_node()
            .name("nameserver")
            .ip("10.0.0.10".parse().unwrap())
            .init(|| async {
                let _ = nameserver::run(
                    NAMESERVER.parse().unwrap(),
                    Duration::from_secs(3),
                    raftmq_proto::auth::ClusterKey::insecure_for_tests(),
                    std::future::pending(),
                )
                .await;
            })
            .build();
        let start_errors = Arc::new(Mutex::new(Vec::new()));
        let cores: Vec<_> = (0..n).map(|_| Arc::new(Mutex::new(None))).collect();
        let (errs, slots) = (start_errors.clone(), cores.clone());
        let faults = raft_store::disk::SimDiskFaults {
            sync_latency: (Duration::from_micros(200), Duration::from_millis(4)),
            ..Default::default()
        };
        let nodes = Nodes::new(n, faults, move |i, disk| {
            let (errs, slot) = (errs.clone(), slots[i].clone());
            async move {
                *slot.lock().unwrap() = None;
                let mut cfg = node_config(i, n, groups);
                cfg.broker.auto_create = true;
                match Node::start(cfg, Arc::new(disk)).await {
                    Ok(node) => {
                        *slot.lock().unwrap() = Some(node.core().clone());
                        std::future::pending::<()>().await;
                        drop(node);
                    }
                    Err(e) => errs
                        .lock()
                        .unwrap()
                        .push(format!("n{} failed to start: {e}", i + 1)),
                }
            }
        });
        BrokerCluster {
            nodes,
            cores,
            start_errors,
            groups,
        }
    }

    /// Node `i`'s broker core, if it is up.
    pub fn core(&self, i: usize) -> Option<Arc<BrokerCore>> {
        if !self.nodes.is_alive(i) {
            return None;
        }
        self.cores[i].lock().unwrap().clone()
    }

    /// The node leading group `g` with the highest term.
    pub fn leader_of(&self, g: u64) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let core = self.core(i)?;
                let m = core.group(g).ok()?.replica.metrics();
                (m.role == Role::Leader).then_some((i, m.term))
            })
            .max_by_key(|(_, t)| *t)
            .map(|(i, _)| i)
    }

    /// The node leading the most groups (the nemesis' "leader").
    pub fn leader(&self) -> Option<usize> {
        let mut count: BTreeMap<usize, u32> = BTreeMap::new();
        for g in 1..=self.groups {
            if let Some(i) = self.leader_of(g) {
                *count.entry(i).or_default() += 1;
            }
        }
        count
            .into_iter()
            .max_by_key(|(i, c)| (*c, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    }

    /// True if every group has a leader.
    pub fn all_led(&self) -> bool {
        (1..=self.groups).all(|g| self.leader_of(g).is_some())
    }

    /// Startup failures.
    pub fn start_errors(&self) -> Vec<String> {
        self.start_errors.lock().unwrap().clone()
    }

    /// Startup failures of node `i`, removed from the list (they were expected).
    pub fn take_start_errors(&self, i: usize) -> Vec<String> {
        sim_nodes::take_errors_of(&self.start_errors, i)
    }
}

/// A v2 client that behaves like the official ones: routes from the nameserver (refreshed
/// after errors), sends to a queue's endpoint, moves to the next queue after any error.
#[derive(Clone)]
struct Client {
    channels: BTreeMap<String, MessagingServiceClient<Channel>>,
    /// (broker name, queue id, endpoint) of every queue of the topic.
    route: Vec<(String, i32, String)>,
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

fn first_addr(e: &Option<pb::Endpoints>) -> Option<String> {
    let a = e.as_ref()?.addresses.first()?;
    Some(format!("{}:{}", a.host, a.port))
}

impl Client {
    fn new() -> Self {
        Client {
            channels: BTreeMap::new(),
            route: Vec::new(),
            at: 0,
        }
    }

    fn channel(&mut self, addr: &str) -> MessagingServiceClient<Channel> {
        self.channels
            .entry(addr.to_string())
            .or_insert_with(|| {
                MessagingServiceClient::new(
                    Endpoint::from_shared(format!("http://{addr}"))
                        .unwrap()
                        .connect_lazy(),
                )
            })
            .clone()
    }

    /// Asks the nameserver for the route. `rust` asks as the Rust client does (every member per
    /// queue, the leader first).
    async fn query_route(&mut self, rust: bool) -> Option<Vec<pb::MessageQueue>> {
        let mut c = self.channel(NAMESERVER);
        let mut r = req(pb::QueryRouteRequest {
            topic: res(TOPIC),
            endpoints: None,
        });
        if rust {
            r.metadata_mut()
                .insert("x-mq-language", "RUST".parse().unwrap());
        }
        match tokio::time::timeout(CLIENT_TIMEOUT, c.query_route(r)).await {
            Ok(Ok(resp)) if ok(&resp.get_ref().status) => Some(resp.into_inner().message_queues),
            other => {
                tracing::debug!(?other, "route query failed");
                None
            }
        }
    }

    async fn refresh(&mut self) {
        if let Some(qs) = self.query_route(false).await {
            let route: Vec<_> = qs
                .into_iter()
                .filter_map(|q| {
                    let b = q.broker?;
                    Some((b.name, q.id, first_addr(&b.endpoints)?))
                })
                .collect();
            if !route.is_empty() {
                self.route = route;
            }
        }
    }

    async fn ensure_route(&mut self) -> bool {
        if self.route.is_empty() {
            self.refresh().await;
        }
        !self.route.is_empty()
    }

    async fn failed(&mut self) {
        self.at += 1;
        if self.at.is_multiple_of(4) {
            self.refresh().await;
        }
    }

    async fn send(&mut self, id: &str, body: &[u8]) -> Result3 {
        if !self.ensure_route().await {
            return Result3::Fail;
        }
        let (_, qid, addr) = self.route[self.at % self.route.len()].clone();
        self.at += 1;
        let msg = pb::Message {
            topic: res(TOPIC),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                message_id: id.into(),
                message_type: pb::MessageType::Normal as i32,
                queue_id: qid,
                ..Default::default()
            }),
            body: body.to_vec().into(),
        };
        let mut c = self.channel(&addr);
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
                self.failed().await;
                Result3::Info
            }
        }
    }

    /// Receives from one broker (group), through the endpoint of one of its queues. Returns the
    /// endpoint used (acks go there) and the messages.
    async fn receive(&mut self) -> Option<(String, Vec<(String, Vec<u8>, u32, String)>)> {
        if !self.ensure_route().await {
            return None;
        }
        let (broker, _, addr) = self.route[self.at % self.route.len()].clone();
        self.at += 1;
        let r = pb::ReceiveMessageRequest {
            group: res(GROUP),
            message_queue: Some(pb::MessageQueue {
                topic: res(TOPIC),
                id: -1,
                broker: Some(pb::Broker {
                    name: broker,
                    id: 0,
                    endpoints: None,
                }),
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
        let mut c = self.channel(&addr);
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
            Ok(Ok((Some(s), msgs))) if s.code == pb::Code::Ok as i32 => Some((addr, msgs)),
            Ok(Ok((Some(s), _))) if s.code == pb::Code::MessageNotFound as i32 => {
                Some((addr, vec![]))
            }
            _ => {
                self.failed().await;
                None
            }
        }
    }

    async fn ack(&mut self, addr: &str, id: &str, handle: &str) -> Result3 {
        let r = pb::AckMessageRequest {
            group: res(GROUP),
            topic: res(TOPIC),
            entries: vec![pb::AckMessageEntry {
                message_id: id.into(),
                receipt_handle: handle.into(),
                lite_topic: None,
            }],
        };
        let mut c = self.channel(addr);
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
            _ => Result3::Info,
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

/// The broker chaos scenario (see the module docs), on 1 or 2 groups. Passes if no acknowledged
/// send is lost, routes converge on the leaders after healing,
/// nothing received was never sent, bodies are intact, and no message is handed out again by a
/// receive that started after its ack succeeded.
pub async fn chaos(seed: u64) -> RunResult {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xb0c3);
    let groups = rng.random_range(1..=2u64);
    let cluster = Arc::new(tokio::sync::Mutex::new(BrokerCluster::new(3, groups)));
    let client_node = Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.0.100".parse().unwrap())
        .build();
    let history: Arc<Mutex<Vec<Op>>> = Arc::new(Mutex::new(Vec::new()));
    let start = tokio::time::Instant::now();
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));

    // Wait for every group to have a leader before any load.
    for _ in 0..200 {
        if cluster.lock().await.all_led() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Swarm: the official-like client or the native one, per seed.
    let native = rng.random::<bool>();
    let mut tasks = Vec::new();
    for p in 0..2u64 {
        let (history, stop) = (history.clone(), stop_producers.clone());
        let mut prng = SmallRng::seed_from_u64(seed.wrapping_add(p * 7919));
        tasks.push(client_node.spawn(async move {
            let mut c = Client::new();
            let native_producer = if native {
                native::producer(&stop).await
            } else {
                None
            };
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("p{p}-{n}");
                n += 1;
                let body = format!("{id}:{}", "x".repeat(prng.random_range(0..64))).into_bytes();
                let result = match &native_producer {
                    Some(np) => native::send(np, &id, &body).await,
                    None => c.send(&id, &body).await,
                };
                history.lock().unwrap().push(Op::Send { id, body, result });
                tokio::time::sleep(Duration::from_millis(prng.random_range(1..15))).await;
            }
            if let Some(np) = native_producer {
                np.shutdown().await;
            }
        }));
    }
    for k in 0..2u64 {
        let (history, stop) = (history.clone(), stop_consumers.clone());
        let mut crng = SmallRng::seed_from_u64(seed.wrapping_add(100 + k));
        tasks.push(client_node.spawn(async move {
            let mut c = Client::new();
            let native_consumer = if native {
                native::consumer(&stop).await
            } else {
                None
            };
            while !stop.load(Ordering::SeqCst) {
                let invoked = micros(start);
                let got = match &native_consumer {
                    Some(nc) => native::receive(nc).await,
                    None => c.receive().await.map(|(addr, msgs)| {
                        msgs.into_iter()
                            .map(|(id, b, a, h)| native::Delivery::Raw(id, b, a, addr.clone(), h))
                            .collect()
                    }),
                };
                let Some(msgs) = got else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                history.lock().unwrap().push(Op::Receive {
                    invoked,
                    msgs: msgs.iter().map(|d| d.summary()).collect(),
                });
                for d in msgs {
                    // Mostly ack; sometimes let the message expire and come back.
                    if crng.random::<f64>() < 0.15 {
                        continue;
                    }
                    let id = d.summary().0;
                    let result = match (&native_consumer, d) {
                        (Some(nc), native::Delivery::Native(m)) => native::ack(nc, &m).await,
                        (_, native::Delivery::Raw(id, _, _, addr, handle)) => {
                            c.ack(&addr, &id, &handle).await
                        }
                        (None, native::Delivery::Native(_)) => unreachable!(),
                    };
                    history.lock().unwrap().push(Op::Ack {
                        id,
                        completed: micros(start),
                        result,
                    });
                }
            }
            if let Some(nc) = native_consumer {
                nc.shutdown().await;
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
                    _ => rng.random_range(0..3usize),
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
        if cluster.lock().await.all_led() {
            leader_found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !leader_found {
        return Err(format!(
            "a group has no leader 10 s after healing; faults: {log:?}"
        ));
    }
    // Routes converge: within a few registration rounds the nameserver names every group's
    // actual leader first (as it tells the Rust client, which never refreshes).
    let mut converged = false;
    let mut seen = Vec::new();
    for _ in 0..50 {
        let mut probe = Client::new();
        if let Some(qs) = client_node
            .spawn(async move { probe.query_route(true).await })
            .await
            .ok()
            .flatten()
        {
            let c = cluster.lock().await;
            seen = qs
                .iter()
                .filter_map(|q| {
                    let b = q.broker.as_ref()?;
                    let g: u64 = b.name.strip_prefix("raftmq-g")?.parse().ok()?;
                    Some((g, first_addr(&b.endpoints)?, c.leader_of(g).map(v2_addr)))
                })
                .collect();
            let groups_seen: BTreeSet<u64> = seen.iter().map(|(g, _, _)| *g).collect();
            if groups_seen.len() as u64 == groups
                && seen
                    .iter()
                    .all(|(_, first, leader)| Some(first) == leader.as_ref())
            {
                converged = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !converged {
        return Err(format!(
            "routes did not converge on the leaders within 10 s: {seen:?}; faults: {log:?}"
        ));
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
    if stats.sent_ok == 0 || stats.received == 0 {
        return Err(format!(
            "the workload did nothing: {stats:?}; faults: {log:?}"
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
        "{groups} groups, {} client: {} sent ok, {} unknown ({} recovered), {} received, {} redeliveries; {} faults; {} unsynced writes lost",
        if native { "native" } else { "official-like" },
        stats.sent_ok,
        stats.sent_info,
        stats.recovered,
        stats.received,
        stats.redeliveries,
        log.len(),
        cluster.lock().await.nodes.lost_writes()
    ))
}

/// The workload through RaftMQ's native client, mapped onto the checker's outcomes: OK,
/// definitely failed, or unknown.
mod native {
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use raftmq_client::ClientConfig;
    use raftmq_client::ClientError;
    use raftmq_client::Filter;
    use raftmq_client::Message;
    use raftmq_client::Producer;
    use raftmq_client::ReceivedMessage;
    use raftmq_client::SimpleConsumer;

    use super::CLIENT_TIMEOUT;
    use super::GROUP;
    use super::NAMESERVER;
    use super::TOPIC;
    use crate::queue_checker::Result3;

    /// A received message, from either client.
    pub enum Delivery {
        Native(Box<ReceivedMessage>),
        /// id, body, attempt, endpoint, receipt handle.
        Raw(String, Vec<u8>, u32, String, String),
    }

    impl Delivery {
        pub fn summary(&self) -> (String, Vec<u8>, u32) {
            match self {
                Delivery::Native(m) => (m.message_id.clone(), m.body.clone(), m.delivery_attempt),
                Delivery::Raw(id, b, a, _, _) => (id.clone(), b.clone(), *a),
            }
        }
    }

    fn config() -> ClientConfig {
        let mut c = ClientConfig::new(NAMESERVER);
        c.request_timeout = CLIENT_TIMEOUT;
        c.long_polling_timeout = Duration::from_secs(1);
        c.route_refresh = Duration::from_secs(5);
        c
    }

    fn outcome(r: Result<(), ClientError>) -> Result3 {
        match r {
            Ok(()) => Result3::Ok,
            Err(e) if e.is_definite() => Result3::Fail,
            Err(e) => {
                if std::env::var("SIM_DEBUG_UNKNOWN").is_ok() {
                    println!("unknown: {e}");
                }
                Result3::Info
            }
        }
    }

    /// Starts a producer, retrying while the cluster comes up.
    pub async fn producer(stop: &AtomicBool) -> Option<Producer> {
        while !stop.load(Ordering::SeqCst) {
            match Producer::builder(config()).topics([TOPIC]).start().await {
                Ok(p) => return Some(p),
                Err(e) => tracing::debug!(error = %e, "producer start failed"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    pub async fn consumer(stop: &AtomicBool) -> Option<SimpleConsumer> {
        while !stop.load(Ordering::SeqCst) {
            match SimpleConsumer::builder(config(), GROUP)
                .subscribe(TOPIC, Filter::All)
                .start()
                .await
            {
                Ok(c) => return Some(c),
                Err(e) => tracing::debug!(error = %e, "consumer start failed"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    pub async fn send(p: &Producer, id: &str, body: &[u8]) -> Result3 {
        let m = Message::new(TOPIC, body.to_vec()).with_message_id(id);
        outcome(p.send(m).await.map(|_| ()))
    }

    pub async fn receive(c: &SimpleConsumer) -> Option<Vec<Delivery>> {
        match c.receive(16, Duration::from_secs(3)).await {
            Ok(ms) => Some(
                ms.into_iter()
                    .map(|m| Delivery::Native(Box::new(m)))
                    .collect(),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "receive failed");
                None
            }
        }
    }

    pub async fn ack(c: &SimpleConsumer, m: &ReceivedMessage) -> Result3 {
        outcome(c.ack(m).await)
    }
}
