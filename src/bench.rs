//! `raftmq bench`: closed-loop send load through the RocketMQ v2 protocol.
//!
//! `--senders` tasks each send one message at a time (the next as soon as the previous is
//! acknowledged, which with RaftMQ means committed on a majority and fsynced there) for
//! `--duration` after a `--warmup`, to one topic or spread over `--topics`. Prints throughput
//! and the send latency distribution.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;

/// Options of `raftmq bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// The broker's v2 endpoints, comma separated; a sender moves to the next after an error.
    #[arg(long, default_value = "127.0.0.1:8081")]
    endpoint: String,
    /// Write every gap between consecutive successful sends longer than 20 ms to this file
    /// (`start_ms end_ms`, milliseconds since the epoch): the unavailability windows.
    #[arg(long)]
    gaps: Option<std::path::PathBuf>,
    /// Topic to send to (created on first use in dev mode).
    #[arg(long, default_value = "BenchTopic")]
    topic: String,
    /// Concurrent senders.
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// HTTP/2 connections to spread the senders over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Spread the messages over this many topics, `<topic>0` .. `<topic>N-1` (created on first
    /// use where topics are created automatically): with the default 8 queues per topic,
    /// `--topics 1250` sends to 10,000 queues (issue 13, item 4). 1: the one `--topic`.
    #[arg(long, default_value_t = 1)]
    topics: usize,
}

impl BenchArgs {
    /// The topic of message `n` of sender `s`: every topic in turn, and each sender starting
    /// at a different one.
    fn topic_of(&self, s: usize, n: u64) -> String {
        if self.topics <= 1 {
            return self.topic.clone();
        }
        let k = (s as u64 + n * self.senders as u64) % self.topics as u64;
        format!("{}{k}", self.topic)
    }
}

fn request(topic: &str, id: String, body: &[u8]) -> tonic::Request<pb::SendMessageRequest> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let msg = pb::Message {
        topic: Some(pb::Resource {
            resource_namespace: String::new(),
            name: topic.to_string(),
        }),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: id,
            message_type: pb::MessageType::Normal as i32,
            body_encoding: pb::Encoding::Identity as i32,
            born_timestamp: Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos() as i32,
            }),
            born_host: "raftmq-bench".into(),
            ..Default::default()
        }),
        body: body.to_vec().into(),
    };
    let mut r = tonic::Request::new(pb::SendMessageRequest {
        messages: vec![msg],
    });
    r.metadata_mut()
        .insert("x-mq-client-id", "raftmq-bench".parse().unwrap());
    r.set_timeout(Duration::from_secs(10));
    r
}

/// Runs the benchmark and prints the report.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One lazily connected channel per (endpoint, connection).
fn channels(args: &BenchArgs) -> anyhow::Result<Vec<Vec<tonic::transport::Channel>>> {
    let mut channels = Vec::new();
    for ep in args.endpoint.split(',').map(str::trim) {
        let mut per = Vec::new();
        for _ in 0..args.connections.max(1) {
            per.push(
                tonic::transport::Endpoint::from_shared(format!("http://{ep}"))
                    .with_context(|| format!("bad endpoint {ep}"))?
                    .connect_timeout(Duration::from_millis(500))
                    .connect_lazy(),
            );
        }
        channels.push(per);
    }
    Ok(channels)
}

/// What the senders share.
#[derive(Clone, Default)]
struct Shared {
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    last_ok: Arc<AtomicU64>,
    gaps: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
}

type Client = MessagingServiceClient<tonic::transport::Channel>;

/// One sender: sends one message at a time until stopped; returns its latency histogram.
async fn sender(
    s: usize,
    clients: Vec<Client>,
    sh: Shared,
    body: Arc<Vec<u8>>,
    args: Arc<BenchArgs>,
) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut n = 0u64;
    let mut at = s % clients.len();
    while !sh.stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let mut client = clients[at].clone();
        let r = client
            .send_message(request(
                &args.topic_of(s, n),
                format!("bench-{s}-{n}"),
                &body,
            ))
            .await;
        n += 1;
        let ok = matches!(&r, Ok(resp) if resp.get_ref().status.as_ref().is_some_and(|x| x.code == pb::Code::Ok as i32));
        if ok {
            let now = epoch_ms();
            let prev = sh.last_ok.fetch_max(now, Ordering::Relaxed);
            if now > prev + 20 {
                sh.gaps.lock().unwrap().push((prev, now));
            }
        } else {
            // Like a client without a route refresh: try the next endpoint.
            at = (at + 1) % clients.len();
        }
        if sh.measuring.load(Ordering::Relaxed) {
            if ok {
                h.record(t.elapsed().as_micros().max(1) as u64).ok();
            } else {
                sh.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    h
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let channels = channels(&args)?;
    // One send first: creates the topic in dev mode and fails fast on a bad setup.
    let mut probe = MessagingServiceClient::new(channels[0][0].clone());
    let st = probe
        .send_message(request(
            &args.topic_of(0, 0),
            "bench-probe".into(),
            b"probe",
        ))
        .await?
        .into_inner()
        .status
        .unwrap_or_default();
    anyhow::ensure!(
        st.code == pb::Code::Ok as i32,
        "probe send failed: {} {}",
        st.code,
        st.message
    );

    let sh = Shared::default();
    sh.last_ok.store(epoch_ms(), Ordering::Relaxed);
    let body = Arc::new(vec![b'x'; args.size]);
    let shared_args = Arc::new(args.clone());
    let mut tasks = Vec::new();
    for s in 0..args.senders {
        let clients: Vec<_> = channels
            .iter()
            .map(|per| {
                MessagingServiceClient::new(per[s % per.len()].clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20)
            })
            .collect();
        let f = sender(s, clients, sh.clone(), body.clone(), shared_args.clone());
        tasks.push(tokio::spawn(f));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    sh.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    sh.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    sh.stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in tasks {
        all.add(t.await?).ok();
    }
    if let Some(path) = &args.gaps {
        let text: String = sh
            .gaps
            .lock()
            .unwrap()
            .iter()
            .map(|(a, b)| format!("{a} {b}\n"))
            .collect();
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let n = all.len();
    let rate = n as f64 / elapsed;
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "raftmq bench: {} senders, {} topic(s), {} B messages, {:.1} s: {:.0} msgs/s ({:.1} MB/s), {} errors",
        args.senders,
        args.topics,
        args.size,
        elapsed,
        rate,
        rate * args.size as f64 / 1e6,
        sh.errors.load(Ordering::Relaxed)
    );
    println!(
        "send latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        all.max() as f64 / 1000.0
    );
    Ok(())
}
