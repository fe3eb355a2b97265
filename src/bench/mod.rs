//! `raftmq bench`: closed-loop load through the RocketMQ v2 protocol.
//!
//! `--senders` tasks each send one message at a time (the next as soon as the previous is
//! acknowledged, which with RaftMQ means committed on a majority and fsynced there) for
//! `--duration` after a `--warmup`, to one topic or spread over `--topics`. `--mode e2e` adds
//! `--consumers` receive loops (the native client's SimpleConsumer: receive 32, then ack them
//! all) on a fresh topic, and measures how many are consumed and how long each took from its
//! send to its receipt. A list of sender counts (`--senders 1,4,16,64`) runs one step per value;
//! `--json` keeps the steps and `--plot` draws their latency against throughput (a PNG).

pub mod checkback;
pub mod filter;
mod plot;
pub mod timers;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use raftmq_client::ClientConfig;
use raftmq_client::Filter;
use raftmq_client::SimpleConsumer;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;

/// What a run measures.
#[derive(clap::ValueEnum, serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Sends only: throughput and send latency.
    Send,
    /// Sends and consumes at once: also the consumed rate and the send-to-receipt latency.
    E2e,
}

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
    /// What to measure.
    #[arg(long, value_enum, default_value = "send")]
    mode: Mode,
    /// Concurrent senders; a list (`1,4,16,64`) runs one step per value, the points of the
    /// plot.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    senders: Vec<usize>,
    /// Receive loops in `--mode e2e`, sharing one consumer (each receives up to 32 messages,
    /// then acks them all and waits for the acks, as the official clients' examples do).
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Consumer group of `--mode e2e` (created on first use where groups are).
    #[arg(long, default_value = "BenchGroup")]
    group: String,
    /// Write the steps' figures here (JSON).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw latency against throughput, one point per step, to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
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
    /// Send each message as a transaction (issue 15): a half message, then its commit
    /// (EndTransaction); a send counts, and its latency is measured, once both are answered.
    #[arg(long)]
    transactional: bool,
}

/// The topics of one step.
#[derive(Clone)]
struct Topics {
    base: String,
    count: usize,
    senders: usize,
}

impl Topics {
    /// The topic of message `n` of sender `s`: every topic in turn, and each sender starting
    /// at a different one.
    fn of(&self, s: usize, n: u64) -> String {
        if self.count <= 1 {
            return self.base.clone();
        }
        let k = (s as u64 + n * self.senders as u64) % self.count as u64;
        format!("{}{k}", self.base)
    }
}

/// Latency percentiles, milliseconds.
#[derive(serde::Serialize, Debug, Clone, Default)]
pub struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The figures of one step (one sender count).
#[derive(serde::Serialize, Debug, Clone)]
pub struct Step {
    mode: Mode,
    senders: usize,
    consumers: usize,
    topic: String,
    topics: usize,
    size: usize,
    secs: f64,
    sent_per_s: f64,
    consumed_per_s: Option<f64>,
    errors: u64,
    send_ms: Latency,
    e2e_ms: Option<Latency>,
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

fn request(
    topic: &str,
    id: String,
    body: &[u8],
    transactional: bool,
) -> tonic::Request<pb::SendMessageRequest> {
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
            message_type: if transactional {
                pb::MessageType::Transaction as i32
            } else {
                pb::MessageType::Normal as i32
            },
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

/// What the senders and consumers share.
#[derive(Clone, Default)]
struct Shared {
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    last_ok: Arc<AtomicU64>,
    gaps: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
    consumed: Arc<AtomicU64>,
    e2e: Arc<std::sync::Mutex<Option<Histogram<u64>>>>,
}

type Client = MessagingServiceClient<tonic::transport::Channel>;

/// Commits the transaction a half message's answer names; true if the broker said OK.
async fn commit(
    client: &mut Client,
    topic: &str,
    id: &str,
    resp: &pb::SendMessageResponse,
) -> bool {
    let Some(entry) = resp.entries.first() else {
        return false;
    };
    let mut r = tonic::Request::new(pb::EndTransactionRequest {
        topic: Some(pb::Resource {
            resource_namespace: String::new(),
            name: topic.to_string(),
        }),
        message_id: id.to_string(),
        transaction_id: entry.transaction_id.clone(),
        resolution: pb::TransactionResolution::Commit as i32,
        source: pb::TransactionSource::SourceClient as i32,
        trace_context: String::new(),
    });
    r.metadata_mut()
        .insert("x-mq-client-id", "raftmq-bench".parse().unwrap());
    r.set_timeout(Duration::from_secs(10));
    matches!(client.end_transaction(r).await, Ok(a) if a.get_ref().status.as_ref().is_some_and(|x| x.code == pb::Code::Ok as i32))
}

/// One sender: sends one message at a time until stopped; returns its latency histogram.
/// Message ids start with `run`, so that a later step's are not taken for resends of an
/// earlier one's (the brokers' deduplication window would answer them without storing).
async fn sender(
    s: usize,
    clients: Vec<Client>,
    sh: Shared,
    body: Arc<Vec<u8>>,
    topics: Topics,
    (run, transactional): (u64, bool),
) -> Histogram<u64> {
    let mut h = histogram();
    let mut n = 0u64;
    let mut at = s % clients.len();
    while !sh.stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let mut client = clients[at].clone();
        let (topic, id) = (topics.of(s, n), format!("bench-{run}-{s}-{n}"));
        let r = client
            .send_message(request(&topic, id.clone(), &body, transactional))
            .await;
        n += 1;
        let mut ok = matches!(&r, Ok(resp) if resp.get_ref().status.as_ref().is_some_and(|x| x.code == pb::Code::Ok as i32));
        if ok
            && transactional
            && let Ok(resp) = &r
        {
            ok = commit(&mut client, &topic, &id, resp.get_ref()).await;
        }
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

/// One receive loop of `--mode e2e`: receives up to 32, records how long each message took
/// from its send, acks them all and waits for the acks.
async fn consumer(c: Arc<SimpleConsumer>, sh: Shared) {
    while !sh.stop.load(Ordering::Relaxed) {
        let msgs = match c.receive(32, Duration::from_secs(30)).await {
            Ok(m) => m,
            Err(_) => {
                if sh.measuring.load(Ordering::Relaxed) {
                    sh.errors.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if sh.measuring.load(Ordering::Relaxed) {
            let now_us = epoch_ms() * 1000;
            let mut e2e = sh.e2e.lock().unwrap();
            let h = e2e.get_or_insert_with(histogram);
            for m in &msgs {
                h.record(now_us.saturating_sub(m.born_ms * 1000).max(1))
                    .ok();
            }
            sh.consumed.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        }
        let acks = futures::future::join_all(msgs.iter().map(|m| c.ack(m))).await;
        if sh.measuring.load(Ordering::Relaxed) {
            let failed = acks.iter().filter(|a| a.is_err()).count() as u64;
            sh.errors.fetch_add(failed, Ordering::Relaxed);
        }
    }
}

/// Runs one step with `senders` senders.
async fn run_step(
    args: &BenchArgs,
    channels: &[Vec<tonic::transport::Channel>],
    senders: usize,
) -> anyhow::Result<Step> {
    // An end-to-end step starts from an empty topic of its own, so what earlier steps left
    // unconsumed does not count against it.
    let topics = Topics {
        base: match args.mode {
            Mode::Send => args.topic.clone(),
            Mode::E2e => format!("{}-e2e-{senders}-{}", args.topic, epoch_ms()),
        },
        count: args.topics,
        senders,
    };
    // One send first: creates the topic in dev mode and fails fast on a bad setup.
    let mut probe = MessagingServiceClient::new(channels[0][0].clone());
    let st = probe
        .send_message(request(
            &topics.of(0, 0),
            format!("bench-probe-{}", epoch_ms()),
            b"probe",
            false,
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
    let mut consumers = Vec::new();
    let mut consumer_client = None;
    if args.mode == Mode::E2e {
        let c = SimpleConsumer::builder(ClientConfig::with_endpoints(&args.endpoint), &args.group)
            .subscribe(&topics.base, Filter::All)
            .start()
            .await
            .context("starting the consumer")?;
        let c = Arc::new(c);
        for _ in 0..args.consumers.max(1) {
            consumers.push(tokio::spawn(consumer(c.clone(), sh.clone())));
        }
        consumer_client = Some(c);
    }
    let body = Arc::new(vec![b'x'; args.size]);
    let run = epoch_ms();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let clients: Vec<_> = channels
            .iter()
            .map(|per| {
                MessagingServiceClient::new(per[s % per.len()].clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20)
            })
            .collect();
        let how = (run, args.transactional);
        let f = sender(s, clients, sh.clone(), body.clone(), topics.clone(), how);
        tasks.push(tokio::spawn(f));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    sh.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    sh.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    sh.stop.store(true, Ordering::Relaxed);
    let mut all = histogram();
    for t in tasks {
        all.add(t.await?).ok();
    }
    // A receive may be waiting out its long poll: the loops are stopped, not awaited.
    for c in consumers {
        c.abort();
        let _ = c.await;
    }
    if let Some(c) = consumer_client.and_then(|c| Arc::try_unwrap(c).ok()) {
        c.shutdown().await;
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
    let e2e = sh.e2e.lock().unwrap().take();
    Ok(Step {
        mode: args.mode,
        senders,
        consumers: if args.mode == Mode::E2e {
            args.consumers.max(1)
        } else {
            0
        },
        topic: topics.base.clone(),
        topics: args.topics,
        size: args.size,
        secs: elapsed,
        sent_per_s: all.len() as f64 / elapsed,
        consumed_per_s: (args.mode == Mode::E2e)
            .then(|| sh.consumed.load(Ordering::Relaxed) as f64 / elapsed),
        errors: sh.errors.load(Ordering::Relaxed),
        send_ms: Latency::of(&all),
        e2e_ms: e2e.as_ref().map(Latency::of),
    })
}

fn print_step(st: &Step) {
    println!(
        "raftmq bench: {} senders, {} topic(s), {} B messages, {:.1} s: {:.0} msgs/s ({:.1} MB/s), {} errors",
        st.senders,
        st.topics,
        st.size,
        st.secs,
        st.sent_per_s,
        st.sent_per_s * st.size as f64 / 1e6,
        st.errors
    );
    let l = &st.send_ms;
    println!(
        "send latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    if let Some(consumed) = st.consumed_per_s {
        println!(
            "consumed: {consumed:.0} msgs/s by {} receive loops ({:.2} of the sent rate)",
            st.consumers,
            consumed / st.sent_per_s.max(1e-9)
        );
    }
    if let Some(l) = &st.e2e_ms {
        println!(
            "end-to-end latency ms (send to receipt): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.senders.is_empty() && args.senders.iter().all(|s| *s > 0),
        "--senders: one or more counts, each at least 1"
    );
    anyhow::ensure!(
        args.mode == Mode::Send || args.topics <= 1,
        "--mode e2e sends to one topic (leave --topics at 1)"
    );
    let channels = channels(&args)?;
    let mut steps = Vec::new();
    for &senders in &args.senders {
        let step = run_step(&args, &channels, senders).await?;
        print_step(&step);
        steps.push(step);
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&steps)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("figures: {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "raftmq bench --mode {}, {} B messages",
            match args.mode {
                Mode::Send => "send",
                Mode::E2e => "e2e",
            },
            args.size
        );
        plot::write(path, &title, &steps)?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(senders: usize, rate: f64, p50: f64, e2e: bool) -> Step {
        let l = |x: f64| Latency {
            p50: x,
            p90: x * 1.5,
            p99: x * 2.0,
            p999: x * 3.0,
            max: x * 4.0,
        };
        Step {
            mode: if e2e { Mode::E2e } else { Mode::Send },
            senders,
            consumers: 4,
            topic: "T".into(),
            topics: 1,
            size: 1024,
            secs: 10.0,
            sent_per_s: rate,
            consumed_per_s: e2e.then_some(rate),
            errors: 0,
            send_ms: l(p50),
            e2e_ms: e2e.then(|| l(p50 * 3.0)),
        }
    }

    /// The plot is a PNG of the stated size, whatever the mode; a step with a latency of 0
    /// (nothing measured) is left out rather than breaking the log scale.
    #[test]
    fn a_sweep_plots_to_a_png() {
        let dir = tempfile::tempdir().unwrap();
        for e2e in [false, true] {
            let path = dir.path().join(format!("plot-{e2e}.png"));
            let steps = vec![
                step(1, 700.0, 1.4, e2e),
                step(4, 2500.0, 1.6, e2e),
                step(16, 6000.0, 2.7, e2e),
                step(64, 7000.0, 0.0, e2e),
            ];
            plot::write(&path, "test", &steps).unwrap();
            let png = std::fs::read(&path).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            // IHDR: width and height, big-endian, at bytes 16..24.
            assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1000);
            assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 640);
        }
        assert!(plot::write(&dir.path().join("none.png"), "t", &[]).is_err());
    }
}
