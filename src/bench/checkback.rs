//! `raftmq bench-checkback`: how soon the broker's transaction check-back reaches a producer
//! (issue 15, item 7).
//!
//! A transactional producer of the native client sends `--transactions` half messages (at most
//! `--in-flight` at once) and ends none of them. Its transaction checker notes when each
//! check arrives and answers ROLLBACK (nothing is delivered, and no further check is due).
//! Reports the time from each send's acknowledgement to its first check, and its lateness:
//! that less `--check-after-secs`, which must be the brokers' `[transactions]
//! check_after_secs` (6 by default, as in RocketMQ); plus checks that came twice and
//! transactions never checked within `--grace` seconds of the last due time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use clap::Args;
use hdrhistogram::Histogram;
use raftmq_client::ClientConfig;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::ReceivedMessage;
use raftmq_client::TransactionResolution;

/// Options of `raftmq bench-checkback`.
#[derive(Args, Debug, Clone)]
pub struct CheckBackArgs {
    /// The v2 endpoint (a broker or a nameserver).
    #[arg(long, default_value = "127.0.0.1:8081")]
    endpoint: String,
    /// Topic (created on first use in dev mode).
    #[arg(long, default_value = "BenchCheckBack")]
    topic: String,
    /// Half messages to send and leave undecided.
    #[arg(long, default_value_t = 2_000)]
    transactions: u64,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// The brokers' first-check delay (`[transactions] check_after_secs`).
    #[arg(long, default_value_t = 6.0)]
    check_after_secs: f64,
    /// Stop waiting this many seconds after the last first check was due.
    #[arg(long, default_value_t = 20)]
    grace: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
}

/// Per transaction: when its send was acknowledged, and when checks came.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<String, Instant>,
    checks: BTreeMap<String, Vec<Instant>>,
}

pub async fn run(a: CheckBackArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.transactions > 0 && a.in_flight > 0,
        "--transactions and --in-flight: at least 1"
    );
    anyhow::ensure!(
        a.check_after_secs.is_finite() && a.check_after_secs >= 0.0,
        "--check-after-secs: a number of seconds, 0 or more"
    );
    let check_after = Duration::from_secs_f64(a.check_after_secs);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    let producer = Arc::new(
        Producer::builder(ClientConfig::new(a.endpoint.clone()))
            .topics([a.topic.clone()])
            .transaction_checker(move |m: &ReceivedMessage| {
                let now = Instant::now();
                s.lock()
                    .unwrap()
                    .checks
                    .entry(m.message_id.clone())
                    .or_default()
                    .push(now);
                TransactionResolution::Rollback
            })
            .start()
            .await?,
    );
    // Ids unique per run: the brokers' deduplication window would answer a second run's
    // sends with the first run's transactions.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let body = Arc::new(vec![b'x'; a.size]);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.in_flight));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    for n in 0..a.transactions {
        let permit = sem.clone().acquire_owned().await?;
        let (p, topic, body, failed, seen) = (
            producer.clone(),
            a.topic.clone(),
            body.clone(),
            failed.clone(),
            seen.clone(),
        );
        let id = format!("checkback-{run}-{n}");
        tokio::spawn(async move {
            let mut tx = p.begin_transaction();
            let m = Message::new(topic, body.to_vec()).with_message_id(id.clone());
            match tx.send(m).await {
                // Left undecided: dropping the transaction neither commits nor rolls back.
                Ok(_) => {
                    seen.lock().unwrap().acked.insert(id, Instant::now());
                }
                Err(_) => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            drop(permit);
        });
    }
    drop(sem.acquire_many(a.in_flight as u32).await?);
    let sent_in = start.elapsed();
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "sent {} half messages in {:.1} s ({failed} failed), none ended",
        a.transactions,
        sent_in.as_secs_f64()
    );
    let until = Instant::now() + check_after + Duration::from_secs(a.grace);
    loop {
        let done = {
            let s = seen.lock().unwrap();
            s.acked.keys().all(|id| s.checks.contains_key(id))
        };
        if done || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second check of a transaction already answered would come an interval later; give
    // the answers a moment to land first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        let s = seen.lock().unwrap();
        let mut delay = Histogram::<u64>::new(3)?;
        let mut late = Histogram::<u64>::new(3)?;
        let (mut missing, mut twice) = (0u64, 0u64);
        for (id, acked) in &s.acked {
            let Some(checks) = s.checks.get(id) else {
                missing += 1;
                continue;
            };
            if checks.len() > 1 {
                twice += 1;
            }
            let first = checks.iter().min().copied().unwrap_or(*acked);
            let d = first.saturating_duration_since(*acked);
            delay.record(d.as_millis() as u64).ok();
            late.record(d.saturating_sub(check_after).as_millis() as u64)
                .ok();
        }
        println!(
            "first check after the send's acknowledgement: p50 {} ms, p99 {} ms, max {} ms \
             (the brokers' delay: {} ms)",
            delay.value_at_quantile(0.5),
            delay.value_at_quantile(0.99),
            delay.max(),
            check_after.as_millis()
        );
        println!(
            "late by: p50 {} ms, p99 {} ms, max {} ms; {} of {} checked, {twice} checked twice, \
             {missing} never",
            late.value_at_quantile(0.5),
            late.value_at_quantile(0.99),
            late.max(),
            s.acked.len() as u64 - missing,
            s.acked.len()
        );
    }
    if let Ok(p) = Arc::try_unwrap(producer) {
        p.shutdown().await;
    }
    Ok(())
}
