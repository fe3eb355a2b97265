//! `raftmq bench-filter`: receive throughput of filtered consumer groups over a backlog
//! (issue 16, item 7).
//!
//! Fills a fresh topic with `--backlog` messages (property `p` = i mod 100, tag `t<i mod
//! 100>`, sent in batches), then, one case at a time, a new consumer group receives (32 at a
//! time, acknowledging each batch, `--consumers` loops) until it has every message its
//! filter matches or `--limit` seconds pass: SQL92 matching 1%, 50% and 100%, a tag filter
//! matching 1%, and no filter. Reports per case the messages received per second and the
//! backlog covered per second (messages the group went past, matched or not).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use clap::Args;
use raftmq_client::ClientConfig;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::SimpleConsumer;

/// Options of `raftmq bench-filter`.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    /// The v2 endpoint (a broker or a nameserver).
    #[arg(long, default_value = "127.0.0.1:8081")]
    endpoint: String,
    /// Topic prefix (a fresh topic per run: `<topic>-<millis>`).
    #[arg(long, default_value = "BenchFilter")]
    topic: String,
    /// Messages in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Receive loops per case.
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Stop a case after this many seconds.
    #[arg(long, default_value_t = 60)]
    limit: u64,
    /// Cases to run (comma separated): sql1, sql50, sql100, tag1, all.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sql1,sql50,sql100,tag1,all"
    )]
    cases: Vec<String>,
}

/// A case: its filter and the fraction of the backlog it matches, in percent.
fn case(name: &str) -> anyhow::Result<(Filter, u64)> {
    Ok(match name {
        "sql1" => (Filter::Sql("p = 7".into()), 1),
        "sql50" => (Filter::Sql("p < 50".into()), 50),
        "sql100" => (Filter::Sql("p >= 0".into()), 100),
        "tag1" => (Filter::Tags(vec!["t7".into()]), 1),
        "all" => (Filter::All, 100),
        other => anyhow::bail!("unknown case {other:?}: sql1, sql50, sql100, tag1 or all"),
    })
}

pub async fn run(a: FilterArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.backlog >= 100 && a.consumers > 0,
        "--backlog: 100 or more; --consumers: 1 or more"
    );
    let cases = a
        .cases
        .iter()
        .map(|c| Ok((c.clone(), case(c)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let topic = format!("{}-{stamp}", a.topic);
    let mut config = ClientConfig::new(a.endpoint.clone());
    config.long_polling_timeout = Duration::from_secs(2);
    fill(&config, &topic, a.backlog, a.size).await?;
    println!("case     matched   received   seconds   received/s   backlog/s");
    for (name, (filter, percent)) in cases {
        let want = a.backlog * percent / 100;
        let group = format!("{topic}-{name}");
        let (got, secs) = drain(&config, &topic, &group, filter, want, &a).await?;
        let rate = got as f64 / secs;
        // The backlog the group went past: all of it once every match came, else what the
        // matches received so far imply.
        let covered = if got >= want {
            a.backlog as f64
        } else {
            got as f64 * 100.0 / percent as f64
        };
        println!(
            "{name:<8} {want:>7} {got:>10} {secs:>9.1} {rate:>12.0} {:>11.0}",
            covered / secs
        );
    }
    Ok(())
}

/// Sends the backlog in batches of 64, 16 batches in flight.
async fn fill(config: &ClientConfig, topic: &str, backlog: u64, size: usize) -> anyhow::Result<()> {
    let producer = Arc::new(
        Producer::builder(config.clone())
            .topics([topic.to_string()])
            .start()
            .await?,
    );
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (p, next, topic) = (producer.clone(), next.clone(), topic.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(64, Ordering::SeqCst);
                if first >= backlog {
                    return anyhow::Ok(());
                }
                let batch: Vec<Message> = (first..(first + 64).min(backlog))
                    .map(|i| {
                        Message::new(topic.clone(), vec![b'x'; size])
                            .with_tag(format!("t{}", i % 100))
                            .with_property("p", (i % 100).to_string())
                    })
                    .collect();
                p.send_batch(batch).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "backlog: {backlog} messages of {size} bytes on {topic} in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One case: receives until `want` messages came or the limit; (received, seconds).
async fn drain(
    config: &ClientConfig,
    topic: &str,
    group: &str,
    filter: Filter,
    want: u64,
    a: &FilterArgs,
) -> anyhow::Result<(u64, f64)> {
    let consumer = Arc::new(
        SimpleConsumer::builder(config.clone(), group)
            .subscribe(topic, filter)
            .start()
            .await?,
    );
    let got = Arc::new(AtomicU64::new(0));
    // Microseconds from the start to the last wanted message's acknowledgement (a loop still
    // in a long poll then does not count).
    let done_us = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let limit = Duration::from_secs(a.limit);
    let mut loops = Vec::new();
    for _ in 0..a.consumers {
        let (c, got, done_us) = (consumer.clone(), got.clone(), done_us.clone());
        loops.push(tokio::spawn(async move {
            while got.load(Ordering::SeqCst) < want && start.elapsed() < limit {
                let msgs = c.receive(32, Duration::from_secs(30)).await?;
                // The batch's acks at once, as the official clients' examples do.
                futures::future::try_join_all(msgs.iter().map(|m| c.ack(m))).await?;
                let n = msgs.len() as u64;
                if n > 0 {
                    got.fetch_add(n, Ordering::SeqCst);
                    done_us.fetch_max(start.elapsed().as_micros() as u64, Ordering::SeqCst);
                }
            }
            anyhow::Ok(())
        }));
    }
    for l in loops {
        l.await??;
    }
    let got = got.load(Ordering::SeqCst);
    let secs = if got >= want {
        done_us.load(Ordering::SeqCst) as f64 / 1e6
    } else {
        start.elapsed().as_secs_f64()
    };
    if let Ok(c) = Arc::try_unwrap(consumer) {
        c.shutdown().await;
    }
    Ok((got, secs))
}
