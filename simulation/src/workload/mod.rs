//! The client workload both suites run — the simulator under madsim and `jepsen/` against real
//! processes — so a history means the same thing in both: plain and FIFO producers, plain and
//! FIFO consumers and an offset reader, all on RaftMQ's native client, each recording
//! [`Op`]s for `checker::messages`; plus the probe send and the drain wait of the liveness
//! phase. Nothing here knows which runtime it is on.

mod reset;
pub use reset::reset;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use checker::messages::Delivered;
use checker::messages::Op;
use checker::messages::Result3;
use checker::messages::filtered;
use raftmq_client::ClientConfig;
use raftmq_client::ClientError;
use raftmq_client::Filter;
use raftmq_client::Message;
use raftmq_client::Producer;
use raftmq_client::PullConsumer;
use raftmq_client::SimpleConsumer;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

/// What every client records into.
pub type History = Arc<Mutex<Vec<Op>>>;

/// Topic and group names of a run.
#[derive(Debug, Clone)]
pub struct Names {
    /// The plain topic.
    pub topic: &'static str,
    /// The FIFO topic.
    pub fifo_topic: &'static str,
    /// The plain consumer group.
    pub group: &'static str,
    /// The FIFO (orderly) consumer group.
    pub fifo_group: &'static str,
    /// The offset reader's group.
    pub pull_group: &'static str,
    /// The SQL92-filtered group on the plain topic ([`checker::messages::filtered`]).
    pub filtered_group: &'static str,
}

/// Called with the id of some acknowledged sends (the simulator checks they are durable on a
/// majority of disks at that moment).
pub type OnAck = Arc<dyn Fn(&str) + Send + Sync>;

/// What the clients share.
#[derive(Clone)]
pub struct Ctx {
    /// Access points and timeouts.
    pub config: ClientConfig,
    /// Topics and groups.
    pub names: Names,
    /// Where operations are recorded.
    pub history: History,
    /// Time zero of the history.
    pub start: Instant,
    /// Invisible duration asked for by receives.
    pub invisible: Duration,
    /// One Raft group: a delivery's queue position is known (see [`consume`]).
    pub single_group: bool,
    /// Pause between two sends of a producer, ms (a random value in this range).
    pub send_pause_ms: (u64, u64),
    /// See [`OnAck`].
    pub on_ack: Option<OnAck>,
}

impl Ctx {
    /// Microseconds since [`Ctx::start`].
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Appends `op` to the history.
    pub fn record(&self, op: Op) {
        self.history.lock().unwrap().push(op);
    }
}

/// A message of the workload: id `id`, and the property the SQL92-filtered group's
/// expression reads ([`checker::messages::filtered`]).
pub fn message(topic: &str, body: Vec<u8>, id: &str) -> Message {
    let pick = filtered::pick(&body).to_string();
    Message::new(topic, body)
        .with_message_id(id)
        .with_property(filtered::PROPERTY, pick)
}

/// How a client call ended, as the checker needs it.
pub fn outcome<T>(r: &Result<T, ClientError>) -> Result3 {
    match r {
        Ok(_) => Result3::Ok,
        Err(e) if e.is_definite() => Result3::Fail,
        Err(_) => Result3::Info,
    }
}

/// Starts a client, retrying every 200 ms until it works or `stop` is set.
pub async fn start_with_retry<T, F, Fut>(stop: &AtomicBool, f: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    while !stop.load(Ordering::SeqCst) {
        match f().await {
            Ok(t) => return Some(t),
            Err(e) => tracing::debug!(error = %e, "client start failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A plain (`group` None) or FIFO producer: sequential sends with ids `<name>-<n>` and bodies
/// `<id>:xxx…`, until `stop`. With `resend`, the idempotent producer (issue 15): the client
/// retries unknown outcomes itself, and the workload sends a message whose outcome stayed
/// unknown again with the same id, until it is acknowledged, refused or the producers stop.
/// The brokers' deduplication window must then store it once: its send is recorded as one
/// that may not repeat, so a second copy is a `duplicate`.
pub async fn produce(
    ctx: Ctx,
    name: String,
    group: Option<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
    resend: bool,
) {
    let topic = if group.is_some() {
        ctx.names.fifo_topic
    } else {
        ctx.names.topic
    };
    let mut config = ctx.config.clone();
    config.retry_unknown = resend;
    let Some(p) = start_with_retry(&stop, || {
        Producer::builder(config.clone()).topics([topic]).start()
    })
    .await
    else {
        return;
    };
    let mut r = SmallRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("{name}-{n}");
        n += 1;
        let body = format!("{id}:{}", "x".repeat(r.random_range(0..48))).into_bytes();
        let mut m = message(topic, body.clone(), &id);
        if let Some(g) = &group {
            m = m.with_message_group(g.clone());
        }
        let invoked = ctx.now();
        let mut res = p.send(m.clone()).await;
        // Once an attempt may have stored it, a later "certainly not stored" (no node
        // reachable) says nothing of that one: go on until it is known, or call it unknown
        // (seed 30 recorded such a send as failed, and its first copy was delivered).
        let mut maybe = false;
        while resend && !stop.load(Ordering::SeqCst) {
            match &res {
                Err(e) if !e.is_definite() => maybe = true,
                Err(ClientError::Unavailable { .. }) if maybe => {}
                _ => break,
            }
            res = p.send(m.clone()).await;
        }
        let result = match &res {
            Err(_) if maybe => Result3::Info,
            _ => outcome(&res),
        };
        let completed = ctx.now();
        if res.is_ok()
            && n % 16 == 1
            && let Some(f) = &ctx.on_ack
        {
            f(&id);
        }
        ctx.record(Op::Send {
            id,
            body,
            group: group.clone(),
            invoked,
            completed,
            result,
            // Where the broker stored it: retention observers in the real-process suite tell
            // deleted messages by it, and every check of positions gets the receipt's view.
            pos: res.as_ref().ok().and_then(|r| {
                let (broker, queue) = r.stored_in.clone()?;
                Some((format!("{topic}/{broker}"), queue, r.offset))
            }),
            may_repeat: false,
            topic: None,
        });
        let (lo, hi) = ctx.send_pause_ms;
        tokio::time::sleep(Duration::from_millis(r.random_range(lo..hi.max(lo + 1)))).await;
    }
    p.shutdown().await;
}

/// A producer of scheduled messages on the plain topic (issue 14): ids `<name>-<n>`, each due
/// 0–2.5 s after its send, about a quarter recalled a moment later (some after their time:
/// refused once the timer has fired), until `stop`. Records each send, its [`Op::Scheduled`] (a
/// delivery completing before the due time less `clock_slack` is early) and each recall.
pub async fn schedule(
    ctx: Ctx,
    name: String,
    clock_slack: Duration,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let topic = ctx.names.topic;
    let Some(p) = start_with_retry(&stop, || {
        Producer::builder(ctx.config.clone())
            .topics([topic])
            .start()
    })
    .await
    else {
        return;
    };
    let mut r = SmallRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("{name}-{n}");
        n += 1;
        let body = format!("{id}:{}", "s".repeat(r.random_range(0..48))).into_bytes();
        let delay = Duration::from_millis(r.random_range(0..2_500));
        // The delivery time is this client's wall clock (in ms) plus the delay, read at the
        // same instant as the history's clock: due on the history's clock at `invoked +
        // delay`, give or take the millisecond the wall clock is truncated to.
        let invoked = ctx.now();
        let m = message(topic, body.clone(), &id).with_delay(delay);
        let res = p.send(m).await;
        let completed = ctx.now();
        ctx.record(Op::Send {
            id: id.clone(),
            body,
            group: None,
            invoked,
            completed,
            result: outcome(&res),
            pos: None,
            may_repeat: false,
            topic: None,
        });
        let not_before = (invoked + delay.as_micros() as u64)
            .saturating_sub(1_000 + clock_slack.as_micros() as u64);
        ctx.record(Op::Scheduled {
            id: id.clone(),
            invoked,
            not_before,
        });
        if let Ok(receipt) = res
            && r.random::<f64>() < 0.25
        {
            let wait = Duration::from_millis(r.random_range(0..1_500));
            tokio::time::sleep(wait).await;
            let invoked = ctx.now();
            let rec = p.recall(topic, &receipt).await;
            ctx.record(Op::Recall {
                id,
                invoked,
                completed: ctx.now(),
                result: outcome(&rec),
            });
        }
        let (lo, hi) = ctx.send_pause_ms;
        tokio::time::sleep(Duration::from_millis(r.random_range(lo..hi.max(lo + 1)))).await;
    }
    p.shutdown().await;
}

/// A transactional producer on the plain topic (issue 15): ids `<name>-<n>`, each sent as a
/// half message whose fate is drawn at once (`:c` commit or `:r` roll back, at the end of its
/// body); its producer ends about 60% of them itself and leaves the rest to the broker's
/// check-back, which its checker answers from the body, the same way. Records each send, its
/// [`Op::Transaction`] and each decision ([`Op::EndTx`]).
pub async fn transact(ctx: Ctx, name: String, seed: u64, stop: Arc<AtomicBool>) {
    let topic = ctx.names.topic;
    let Some(p) = start_with_retry(&stop, || {
        Producer::builder(ctx.config.clone())
            .topics([topic])
            .transaction_checker(checker(&ctx))
            .start()
    })
    .await
    else {
        return;
    };
    let mut r = SmallRng::seed_from_u64(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let id = format!("{name}-{n}");
        n += 1;
        let commit = r.random::<bool>();
        let body = format!(
            "{id}:{}:{}",
            "x".repeat(r.random_range(0..32)),
            if commit { "c" } else { "r" }
        )
        .into_bytes();
        let (tx, sent) = send_half(&ctx, &p, &id, body, commit).await;
        if sent && r.random::<f64>() < 0.6 {
            let wait = Duration::from_millis(r.random_range(0..500));
            tokio::time::sleep(wait).await;
            let invoked = ctx.now();
            let end = if commit {
                tx.commit().await
            } else {
                tx.rollback().await
            };
            ctx.record(Op::EndTx {
                id,
                commit,
                invoked,
                completed: ctx.now(),
                result: outcome(&end),
            });
        }
        let (lo, hi) = ctx.send_pause_ms;
        tokio::time::sleep(Duration::from_millis(r.random_range(lo..hi.max(lo + 1)))).await;
    }
    p.shutdown().await;
}

/// Sends `body` as the half message `id` of a new transaction of `p` on the plain topic,
/// recording the send and its [`Op::Transaction`] (`commit`: what its producer means to
/// decide); whether the send was acknowledged.
async fn send_half(
    ctx: &Ctx,
    p: &Producer,
    id: &str,
    body: Vec<u8>,
    commit: bool,
) -> (raftmq_client::Transaction, bool) {
    let mut tx = p.begin_transaction();
    let invoked = ctx.now();
    let m = message(ctx.names.topic, body.clone(), id);
    let res = tx.send(m).await;
    ctx.record(Op::Send {
        id: id.to_string(),
        body,
        group: None,
        invoked,
        completed: ctx.now(),
        result: outcome(&res),
        pos: None,
        may_repeat: false,
        topic: None,
    });
    ctx.record(Op::Transaction {
        id: id.to_string(),
        invoked,
        commit,
    });
    (tx, res.is_ok())
}

/// The transactional producers' checker: answers from the body (`:c` commit, else roll
/// back) and records that a check-back reached it ([`Op::TxChecked`]).
fn checker(ctx: &Ctx) -> impl raftmq_client::TransactionChecker {
    let ctx = ctx.clone();
    move |m: &raftmq_client::ReceivedMessage| {
        ctx.record(Op::TxChecked {
            id: m.message_id.clone(),
            at: ctx.now(),
        });
        if m.body.ends_with(b":c") {
            raftmq_client::TransactionResolution::Commit
        } else {
            raftmq_client::TransactionResolution::Rollback
        }
    }
}

/// After healing (`txn-unchecked`, issue 15): records that from now on a transaction left
/// undecided is owed a check within `within` ([`Op::TxCheckOwed`]), then a new transactional
/// producer (`tp-<n>`) sends `n` half messages it never ends, and stays until each was checked
/// or `within` and a second more have passed. Its sends and checks are in the history; the
/// checker judges them.
pub async fn check_back_probe(ctx: Ctx, n: u64, within: Duration) {
    let topic = ctx.names.topic;
    ctx.record(Op::TxCheckOwed {
        from: ctx.now(),
        within: within.as_micros() as u64,
    });
    let give_up = tokio::time::Instant::now() + within * 3;
    let p = loop {
        let started = Producer::builder(ctx.config.clone())
            .topics([topic])
            .transaction_checker(checker(&ctx))
            .start()
            .await;
        match started {
            Ok(p) => break p,
            Err(_) if tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "check-back probe: no producer");
                return;
            }
        }
    };
    let mut ids = Vec::new();
    for k in 0..n {
        let id = format!("tp-{k}");
        let body = format!("{id}:{}", if k % 2 == 0 { "c" } else { "r" }).into_bytes();
        let (tx, _) = send_half(&ctx, &p, &id, body, k % 2 == 0).await;
        // Left undecided: dropping it neither commits nor rolls back.
        drop(tx);
        ids.push(id);
    }
    let until = tokio::time::Instant::now() + within + Duration::from_secs(1);
    while tokio::time::Instant::now() < until {
        let checked = {
            let h = ctx.history.lock().unwrap();
            let seen: BTreeSet<&str> = h
                .iter()
                .filter_map(|op| match op {
                    Op::TxChecked { id, .. } => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            ids.iter().all(|id| seen.contains(id.as_str()))
        };
        if checked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.shutdown().await;
}

/// A consumer: receives, mostly acks (FIFO: in order, stopping at the first message it
/// leaves unacknowledged). Once `draining` is set (producers stopped, faults healed) it acks
/// everything: redelivery is exercised during the chaos, and a FIFO group stalls for the whole
/// invisible duration at each skipped message, which would make the drain bound a measure of
/// the workload rather than of the broker.
pub async fn consume(
    ctx: Ctx,
    k: u32,
    fifo: bool,
    seed: u64,
    stop: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
) {
    let (topic, group, filter) = if fifo {
        (ctx.names.fifo_topic, ctx.names.fifo_group, Filter::All)
    } else if k >= filtered::FILTERED_CONSUMER {
        let sql = Filter::Sql(filtered::EXPRESSION.into());
        (ctx.names.topic, ctx.names.filtered_group, sql)
    } else {
        (ctx.names.topic, ctx.names.group, Filter::All)
    };
    let Some(c) = start_with_retry(&stop, || {
        SimpleConsumer::builder(ctx.config.clone(), group)
            .subscribe(topic, filter.clone())
            .start()
    })
    .await
    else {
        return;
    };
    let mut r = SmallRng::seed_from_u64(seed);
    while !stop.load(Ordering::SeqCst) {
        let invoked = ctx.now();
        let got = c.receive(32, ctx.invisible).await;
        let completed = ctx.now();
        let msgs = match got {
            Ok(m) => m,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        ctx.record(Op::Receive {
            consumer: k,
            fifo,
            invoked,
            completed,
            invisible_us: ctx.invisible.as_micros() as u64,
            msgs: msgs
                .iter()
                .map(|m| Delivered {
                    id: m.message_id.clone(),
                    body: m.body.clone(),
                    attempt: m.delivery_attempt,
                    // With several groups a receive may be served from another group of the
                    // topic than the one it named, so its position is known only with one.
                    pos: m
                        .queue_offset
                        .filter(|_| ctx.single_group)
                        .map(|o| (format!("{}/{}", m.topic, m.broker), m.queue_id, o)),
                })
                .collect(),
        });
        for m in msgs {
            let skip = r.random::<f64>() < if fifo { 0.05 } else { 0.15 };
            if skip && !draining.load(Ordering::SeqCst) {
                if fifo {
                    break;
                }
                continue;
            }
            let invoked = ctx.now();
            let res = c.ack(&m).await;
            let result = outcome(&res);
            ctx.record(Op::Ack {
                consumer: k,
                id: m.message_id.clone(),
                invoked,
                completed: ctx.now(),
                result,
            });
            if fifo && result != Result3::Ok {
                break;
            }
        }
    }
    c.shutdown().await;
}

/// Reads every queue of the plain topic by offset and commits its cursor; reads the committed
/// offset back now and then.
pub async fn pull(ctx: Ctx, stop: Arc<AtomicBool>) {
    let topic = ctx.names.topic;
    let Some(c) = start_with_retry(&stop, || {
        PullConsumer::builder(ctx.config.clone(), ctx.names.pull_group)
            .topics([topic])
            .start()
    })
    .await
    else {
        return;
    };
    let mut cursors: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        let queues = match c.queues(topic).await {
            Ok(q) => q,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for q in queues {
            let key = (q.broker.clone(), q.id);
            let from = *cursors.get(&key).unwrap_or(&0);
            let broker = format!("{topic}/{}", q.broker);
            let invoked = ctx.now();
            if let Ok(got) = c.pull(&q, from, 32, &Filter::All).await {
                ctx.record(Op::Pull {
                    broker: broker.clone(),
                    queue: q.id,
                    from,
                    invoked,
                    completed: ctx.now(),
                    msgs: got
                        .messages
                        .iter()
                        .map(|m| {
                            let offset = m.queue_offset.unwrap_or(-1);
                            (offset, m.message_id.clone(), m.body.clone())
                        })
                        .collect(),
                    next: got.next_offset,
                });
                if got.next_offset > from {
                    cursors.insert(key, got.next_offset);
                    let invoked = ctx.now();
                    let res = c.commit(&q, got.next_offset).await;
                    ctx.record(Op::Commit {
                        broker: broker.clone(),
                        queue: q.id,
                        offset: got.next_offset,
                        invoked,
                        completed: ctx.now(),
                        result: outcome(&res),
                    });
                }
            }
            let invoked = ctx.now();
            if let Ok(v) = c.committed(&q).await {
                ctx.record(Op::ReadCommitted {
                    broker,
                    queue: q.id,
                    invoked,
                    completed: ctx.now(),
                    value: v,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.shutdown().await;
}

/// After healing: sends `probe-<n>` until one is acknowledged (at most `tries`, 250 ms apart),
/// recording each send. Starting the producer is part of the probe: right after a restart of
/// every node the nameserver may not know the topic's brokers yet.
pub async fn probe(ctx: Ctx, tries: u32) -> Result<(), ClientError> {
    let topic = ctx.names.topic;
    let mut last = None;
    let mut producer = None;
    for n in 0..tries {
        let p = match &producer {
            Some(p) => p,
            None => match Producer::builder(ctx.config.clone())
                .topics([topic])
                .start()
                .await
            {
                Ok(p) => producer.insert(p),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
        };
        let id = format!("probe-{n}");
        let invoked = ctx.now();
        let r = p.send(message(topic, id.clone().into_bytes(), &id)).await;
        ctx.record(Op::Send {
            body: id.clone().into_bytes(),
            id,
            group: None,
            invoked,
            completed: ctx.now(),
            result: outcome(&r),
            pos: None,
            may_repeat: false,
            topic: None,
        });
        match r {
            Ok(_) => {
                if let Some(p) = producer {
                    p.shutdown().await;
                }
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last.unwrap_or(ClientError::Shutdown))
}

/// Resolves once every acknowledged send has been received and no receive has returned
/// anything for `quiet` (so redeliveries of unacknowledged messages have settled).
pub async fn drained(ctx: &Ctx, quiet: Duration) {
    drained_since(&ctx.history, ctx.start, quiet).await
}

/// [`drained`] for a history whose times count from `start`. (An ack whose outcome is
/// unknown may well have succeeded, so "every message acked" is not a usable criterion.)
pub async fn drained_since(history: &History, start: Instant, quiet: Duration) {
    loop {
        let now = start.elapsed().as_micros() as u64;
        if is_drained(&history.lock().unwrap(), now, quiet, &|_| false) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// True if every acknowledged send (for a transaction: every acknowledged commit) has been
/// received, except those `gone` says retention deleted or the history records as
/// [`Op::Expired`], and no receive has returned anything for
/// `quiet` before `now` (µs of the history's clock).
pub fn is_drained(h: &[Op], now: u64, quiet: Duration, gone: &dyn Fn(&str) -> bool) -> bool {
    let expired: BTreeSet<&str> = h
        .iter()
        .filter_map(|op| match op {
            Op::Expired { ids, .. } => Some(ids.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    // A recalled message (or one whose recall may have happened) is not expected.
    let recalled: BTreeSet<&str> = h
        .iter()
        .filter_map(|op| match op {
            Op::Recall { id, result, .. } if *result != Result3::Fail => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let gone = |id: &str| expired.contains(id) || recalled.contains(id) || gone(id);
    // A transaction's message is expected once its commit was answered OK (one left to the
    // check-back may come, or be discarded after the last check).
    let txns: BTreeSet<&str> = h
        .iter()
        .filter_map(|op| match op {
            Op::Transaction { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut sent = BTreeSet::new();
    let mut got = BTreeSet::new();
    // The SQL92-filtered group, if there is one: the plain topic's sends it wants (for a
    // transaction, its half message's send; the commit makes it owed).
    let mut plain = BTreeSet::new();
    let mut filtered_got = BTreeSet::new();
    let mut has_filtered = false;
    let mut last = 0;
    for op in h {
        match op {
            Op::Send {
                id,
                result,
                group,
                topic,
                body,
                ..
            } => {
                if *result == Result3::Ok && !gone(id) && !txns.contains(id.as_str()) {
                    sent.insert(id.as_str());
                }
                if group.is_none() && topic.is_none() && filtered::wanted(body) {
                    plain.insert(id.as_str());
                }
            }
            Op::Receive {
                consumer,
                msgs,
                invoked,
                ..
            } if *consumer >= filtered::FILTERED_CONSUMER => {
                has_filtered = true;
                if !msgs.is_empty() {
                    last = last.max(*invoked);
                }
                filtered_got.extend(msgs.iter().map(|m| m.id.as_str()));
            }
            Op::EndTx {
                id,
                commit: true,
                result: Result3::Ok,
                ..
            } if !gone(id) => {
                sent.insert(id.as_str());
            }
            Op::Receive { invoked, msgs, .. } if !msgs.is_empty() => {
                last = last.max(*invoked);
                got.extend(msgs.iter().map(|m| m.id.as_str()));
            }
            _ => {}
        }
    }
    // `plain`: the plain topic's messages the filtered group wants, whatever their outcome.
    let filtered_done = !has_filtered
        || sent
            .iter()
            .filter(|id| plain.contains(*id))
            .all(|id| filtered_got.contains(id));
    sent.is_subset(&got) && filtered_done && now.saturating_sub(last) > quiet.as_micros() as u64
}
