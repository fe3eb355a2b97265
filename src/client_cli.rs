//! `raftmq produce` and `raftmq consume`: the native client (`raftmq-client`) from the shell,
//! with a progress line for long runs. A run that loses or fails anything exits non-zero.

use std::io::IsTerminal;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::SimpleConsumer;

/// Options shared by both commands.
#[derive(Args, Clone)]
pub struct Conn {
    /// Access points (nameservers or brokers), comma separated.
    #[arg(long, default_value = "127.0.0.1:8081")]
    endpoints: String,
    /// Deadline of one request, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

impl Conn {
    fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut c = ClientConfig::with_endpoints(&self.endpoints);
        c.request_timeout = Duration::from_millis(self.timeout_ms);
        c.validate()?;
        Ok(c)
    }
}

/// `raftmq produce`.
#[derive(Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    conn: Conn,
    /// Topic to send to.
    #[arg(long)]
    topic: String,
    /// Messages to send.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Body text (`{i}` is replaced by the message number); default "message {i}".
    #[arg(long)]
    body: Option<String>,
    /// Pad bodies to this many bytes.
    #[arg(long, default_value_t = 0)]
    size: usize,
    /// Tag.
    #[arg(long)]
    tag: Option<String>,
    /// Keys, comma separated (`{i}` is replaced by the message number).
    #[arg(long)]
    keys: Option<String>,
    /// Message group (FIFO); `{i}` is replaced by the message number modulo --groups.
    #[arg(long)]
    message_group: Option<String>,
    /// Distinct message groups when --message-group contains `{i}`.
    #[arg(long, default_value_t = 16)]
    groups: u64,
    /// Deliver this many milliseconds after sending (delay message).
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Also retry sends whose outcome is unknown (duplicates possible, never loss).
    #[arg(long)]
    retry_unknown: bool,
}

/// `raftmq consume`.
#[derive(Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    conn: Conn,
    /// Topic to consume.
    #[arg(long)]
    topic: String,
    /// Consumer group.
    #[arg(long, default_value = "raftmq-cli")]
    group: String,
    /// Only messages with one of these tags (comma separated).
    #[arg(long)]
    tags: Option<String>,
    /// Stop after this many messages (0: run until idle or Ctrl-C).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Stop after this many seconds without a message (0: never).
    #[arg(long, default_value_t = 0)]
    idle_exit: u64,
    /// Print each message (id, queue, offset, attempt, body).
    #[arg(long)]
    print: bool,
    /// Invisible duration of received messages, in seconds.
    #[arg(long, default_value_t = 30)]
    invisible_secs: u64,
}

/// Prints "label done/total, rate, errors" once a second: in place on a terminal, a line
/// every ten seconds otherwise.
struct Progress {
    start: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            last: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn tick(&mut self, line: impl FnOnce(f64) -> String) {
        let every = if self.tty { 1 } else { 10 };
        if self.last.elapsed() < Duration::from_secs(every) {
            return;
        }
        self.last = Instant::now();
        let text = line(self.start.elapsed().as_secs_f64());
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r{text}   ");
        } else {
            let _ = writeln!(e, "{text}");
        }
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn fill(template: &str, i: u64) -> String {
    template.replace("{i}", &i.to_string())
}

pub async fn produce(a: ProduceArgs) -> anyhow::Result<()> {
    let mut config = a.conn.config()?;
    config.retry_unknown = a.retry_unknown;
    let producer = Arc::new(
        Producer::builder(config)
            .topics([a.topic.clone()])
            .start()
            .await?,
    );
    let sent = Arc::new(AtomicU64::new(0));
    let unknown = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let a = Arc::new(a);
    let workers: Vec<_> = (0..a.concurrency.max(1))
        .map(|_| {
            let (p, a, next) = (producer.clone(), a.clone(), next.clone());
            let (sent, unknown, failed) = (sent.clone(), unknown.clone(), failed.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= a.count {
                        return;
                    }
                    let mut body = fill(a.body.as_deref().unwrap_or("message {i}"), i).into_bytes();
                    if body.len() < a.size {
                        body.resize(a.size, b'.');
                    }
                    let mut m = Message::new(a.topic.clone(), body);
                    if let Some(t) = &a.tag {
                        m = m.with_tag(t.clone());
                    }
                    if let Some(k) = &a.keys {
                        m = m.with_keys(fill(k, i).split(',').map(str::to_string));
                    }
                    if let Some(g) = &a.message_group {
                        m = m.with_message_group(fill(g, i % a.groups.max(1)));
                    }
                    if let Some(d) = a.delay_ms {
                        m = m.with_delay(Duration::from_millis(d));
                    }
                    match p.send(m).await {
                        Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                        Err(e @ ClientError::Unknown { .. }) => {
                            tracing::warn!(message = i, error = %e, "send outcome unknown");
                            unknown.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            tracing::warn!(message = i, error = %e, "send failed");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let mut progress = Progress::new();
    let all = futures::future::join_all(workers);
    tokio::pin!(all);
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        progress.tick(|secs| {
            let s = sent.load(Ordering::Relaxed);
            format!(
                "sent {s}/{} ({:.0} msg/s), unknown {}, failed {}",
                a.count,
                s as f64 / secs.max(0.001),
                unknown.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            )
        });
    }
    progress.end();
    let secs = progress.start.elapsed().as_secs_f64();
    let (s, u, f) = (
        sent.load(Ordering::Relaxed),
        unknown.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "sent {s} of {} to {} in {secs:.1} s ({:.0} msg/s); outcome unknown {u}, failed {f}",
        a.count,
        a.topic,
        s as f64 / secs.max(0.001)
    );
    if let Ok(p) = Arc::try_unwrap(producer) {
        p.shutdown().await;
    }
    if u + f > 0 {
        bail!("{} of {} sends were not acknowledged", u + f, a.count);
    }
    Ok(())
}

pub async fn consume(a: ConsumeArgs) -> anyhow::Result<()> {
    let filter = match &a.tags {
        Some(t) => Filter::Tags(t.split(',').map(str::to_string).collect()),
        None => Filter::All,
    };
    let consumer = SimpleConsumer::builder(a.conn.config()?, a.group.clone())
        .subscribe(a.topic.clone(), filter)
        .start()
        .await?;
    let mut got = 0u64;
    let mut errors = 0u64;
    let mut idle_since = Instant::now();
    let mut progress = Progress::new();
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let invisible = Duration::from_secs(a.invisible_secs.max(1));
    while a.count == 0 || got < a.count {
        if a.idle_exit > 0 && idle_since.elapsed() >= Duration::from_secs(a.idle_exit) {
            break;
        }
        let batch = tokio::select! {
            _ = &mut stop => break,
            r = consumer.receive(32, invisible) => r,
        };
        let msgs = match batch {
            Ok(m) => m,
            Err(e) => {
                errors += 1;
                tracing::warn!(error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if !msgs.is_empty() {
            idle_since = Instant::now();
        }
        for m in &msgs {
            if a.print {
                println!(
                    "{} {}:{} offset {} attempt {} tag {} body {}",
                    m.message_id,
                    m.broker,
                    m.queue_id,
                    m.queue_offset.unwrap_or(-1),
                    m.delivery_attempt,
                    m.tag.as_deref().unwrap_or("-"),
                    String::from_utf8_lossy(&m.body)
                );
            }
        }
        // Acks of one batch go out together: each is a replicated write.
        let acks = futures::future::join_all(msgs.iter().map(|m| consumer.ack(m))).await;
        for (m, r) in msgs.iter().zip(acks) {
            match r {
                Ok(()) => got += 1,
                Err(e) => {
                    errors += 1;
                    tracing::warn!(message_id = m.message_id, error = %e, "ack failed");
                }
            }
        }
        progress.tick(|secs| {
            format!(
                "consumed {got} ({:.0} msg/s), errors {errors}",
                got as f64 / secs.max(0.001)
            )
        });
    }
    progress.end();
    println!(
        "consumed {got} from {} as {}; errors {errors}",
        a.topic, a.group
    );
    consumer.shutdown().await;
    Ok(())
}
