//! `raftmq bench-timers`: how late scheduled (DELAY) messages are delivered (issue 14, item 7).
//!
//! Sends `--timers` messages through the native client (at most `--in-flight` at once), due
//! from `--lead` seconds after the start, spread evenly over `--spread` seconds (0: every one
//! due in the same second), while `--consumers` receive loops take them. Each delivery's
//! lateness is the receipt time minus the message's delivery time (both by this machine's wall
//! clock, so the client must run where the brokers' clocks agree with it). Reports the
//! lateness percentiles and counts early, missing and duplicate deliveries. Meanwhile a probe
//! sends `--probe-rate` plain messages a second to `<topic>Probe`, one at a time: their send
//! latency before the first due time and while timers fire says whether firing stalls sends
//! (issue 14, item 2).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use clap::Args;
use hdrhistogram::Histogram;
use raftmq_client::ClientConfig;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::SimpleConsumer;

/// Options of `raftmq bench-timers`.
#[derive(Args, Debug, Clone)]
pub struct TimerArgs {
    /// The v2 endpoint (a broker or a nameserver).
    #[arg(long, default_value = "127.0.0.1:8081")]
    endpoint: String,
    /// Topic (created on first use in dev mode).
    #[arg(long, default_value = "BenchTimers")]
    topic: String,
    /// Consumer group.
    #[arg(long, default_value = "BenchTimersGroup")]
    group: String,
    /// Scheduled messages to send.
    #[arg(long, default_value_t = 100_000)]
    timers: u64,
    /// Seconds from the start to the first due time (the sends should be done by then).
    #[arg(long, default_value_t = 20)]
    lead: u64,
    /// Seconds the due times are spread over; 0: all due in the same second.
    #[arg(long, default_value_t = 60)]
    spread: u64,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Receive loops (each receives up to 32, then acks them all).
    #[arg(long, default_value_t = 4)]
    consumers: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Stop waiting this many seconds after the last due time.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// Plain sends a second of the probe (0: no probe).
    #[arg(long, default_value_t = 50)]
    probe_rate: u64,
}

/// Send latencies of the probe (µs): before the first due time, and from it until every timer
/// was delivered (or the wait ended).
#[derive(Default)]
struct Probe {
    before: Option<Histogram<u64>>,
    during: Option<Histogram<u64>>,
    failed: u64,
}

fn summary(h: &Option<Histogram<u64>>) -> String {
    match h {
        Some(h) => format!(
            "{} sends, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        ),
        None => "no sends".into(),
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Default)]
struct Seen {
    ids: BTreeSet<String>,
    duplicates: u64,
    early: u64,
    /// Lateness in ms (early ones count as 0 here, and in `early`).
    late: Option<Histogram<u64>>,
    /// Of that, how late the broker stored the message in its queue (its store time, in
    /// cluster time, minus its delivery time).
    fired: Option<Histogram<u64>>,
}

pub async fn run(a: TimerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.timers > 0 && a.in_flight > 0,
        "--timers and --in-flight: at least 1"
    );
    let mut cfg = ClientConfig::new(a.endpoint.clone());
    cfg.long_polling_timeout = Duration::from_secs(5);
    let producer = Arc::new(
        Producer::builder(cfg.clone())
            .topics([a.topic.clone()])
            .start()
            .await?,
    );
    let consumer = Arc::new(
        SimpleConsumer::builder(cfg, a.group.clone())
            .subscribe(a.topic.clone(), Filter::All)
            .start()
            .await?,
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..a.consumers {
        let (c, seen, stop) = (consumer.clone(), seen.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Invisible for 15 s: a receive whose answer a leader's kill lost comes back
                // within `--grace` (with 60 s, a failover run reported it missing).
                let Ok(msgs) = c.receive(32, Duration::from_secs(15)).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let now = epoch_ms();
                {
                    let mut s = seen.lock().unwrap();
                    for m in &msgs {
                        let due = m.delivery_ms.unwrap_or(0);
                        if now < due {
                            s.early += 1;
                        }
                        s.late
                            .get_or_insert_with(|| Histogram::new(3).expect("histogram"))
                            .record(now.saturating_sub(due))
                            .ok();
                        s.fired
                            .get_or_insert_with(|| Histogram::new(3).expect("histogram"))
                            .record(m.store_ms.unwrap_or(due).saturating_sub(due))
                            .ok();
                        if !s.ids.insert(m.message_id.clone()) {
                            s.duplicates += 1;
                        }
                    }
                }
                futures::future::join_all(msgs.iter().map(|m| c.ack(m))).await;
            }
        }));
    }

    let start = epoch_ms();
    let first_due = start + a.lead * 1000;
    let probe = Arc::new(Mutex::new(Probe::default()));
    if let Some(per_send) = 1_000_000u64.checked_div(a.probe_rate) {
        let (p, probe, stop) = (producer.clone(), probe.clone(), stop.clone());
        let topic = format!("{}Probe", a.topic);
        let gap = Duration::from_micros(per_send);
        loops.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                let sent_at = epoch_ms();
                let ok = p
                    .send(Message::new(topic.clone(), b"probe".to_vec()))
                    .await
                    .is_ok();
                let us = t.elapsed().as_micros() as u64;
                {
                    let mut pr = probe.lock().unwrap();
                    if !ok {
                        pr.failed += 1;
                    }
                    let h = if sent_at < first_due {
                        &mut pr.before
                    } else {
                        &mut pr.during
                    };
                    h.get_or_insert_with(|| Histogram::new(3).expect("histogram"))
                        .record(us)
                        .ok();
                }
                tokio::time::sleep(gap.saturating_sub(t.elapsed())).await;
            }
        }));
    }
    let body = Arc::new(vec![b'x'; a.size]);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.in_flight));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Handles are not kept: a finished task's memory lives as long as its handle (a million
    // kept handles held 3 GB).
    for n in 0..a.timers {
        let due = first_due + (a.spread * 1000 * n) / a.timers;
        let permit = sem.clone().acquire_owned().await?;
        let (p, topic, body, failed) = (
            producer.clone(),
            a.topic.clone(),
            body.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let m = Message::new(topic, body.to_vec())
                .with_delivery_time(UNIX_EPOCH + Duration::from_millis(due));
            if p.send(m).await.is_err() {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    // Every send has finished once every permit is free again.
    drop(sem.acquire_many(a.in_flight as u32).await?);
    let sent_in = epoch_ms() - start;
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "sent {} scheduled messages in {:.1} s ({failed} failed); first due {:.1} s after the start",
        a.timers,
        sent_in as f64 / 1000.0,
        a.lead as f64
    );
    if sent_in > a.lead * 1000 {
        println!(
            "warning: the sends outlasted --lead; the first timers were due before they were sent"
        );
    }
    let want = a.timers - failed;
    let last_due = first_due + a.spread * 1000;
    loop {
        let got = seen.lock().unwrap().ids.len() as u64;
        if got >= want || epoch_ms() > last_due + a.grace * 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Any duplicate would come now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if a.probe_rate > 0 {
        let pr = probe.lock().unwrap();
        println!(
            "probe sends before the first due time: {}; while timers fired: {}; {} failed",
            summary(&pr.before),
            summary(&pr.during),
            pr.failed
        );
    }
    let s = seen.lock().unwrap();
    let pct = |q: f64| s.late.as_ref().map_or(0, |h| h.value_at_quantile(q));
    let fired = |q: f64| s.fired.as_ref().map_or(0, |h| h.value_at_quantile(q));
    println!(
        "delivered {} of {want}: lateness p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms; \
         {} early, {} duplicates, {} missing",
        s.ids.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        s.late.as_ref().map_or(0, |h| h.max()),
        s.early,
        s.duplicates,
        want.saturating_sub(s.ids.len() as u64)
    );
    println!(
        "stored in their queues (cluster time) p50 {} ms, p99 {} ms, max {} ms after their time",
        fired(0.5),
        fired(0.99),
        s.fired.as_ref().map_or(0, |h| h.max()),
    );
    for l in loops {
        l.abort();
    }
    Ok(())
}
