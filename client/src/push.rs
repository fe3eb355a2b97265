//! The push consumer: the client pulls for you and calls a listener, with bounded
//! concurrency. Assignments (which queues to read) are asked of the access point every few
//! seconds. In FIFO mode one message group is consumed one message at a time, in order, and
//! a batch is finished before the next receive from its queue, so order never inverts.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::base::Base;
use crate::config::ClientConfig;
use crate::consumer::Filter;
use crate::consumer::ack;
use crate::consumer::nack;
use crate::consumer::receive;
use crate::consumer::start_consumer;
use crate::error::ClientError;
use crate::error::Failure;
use crate::message::ReceivedMessage;
use crate::route::Queue;
use crate::rpc::check;

/// What a listener says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Processed: acknowledge it.
    Success,
    /// Not processed: deliver it again later.
    Failure,
}

type Listener = Arc<
    dyn Fn(ReceivedMessage) -> Pin<Box<dyn Future<Output = ConsumeResult> + Send>> + Send + Sync,
>;

/// Builds a [`PushConsumer`].
pub struct PushConsumerBuilder {
    config: ClientConfig,
    group: String,
    subscriptions: Vec<(String, Filter)>,
    max_concurrency: usize,
    fifo: Option<bool>,
    invisible: Duration,
    local_attempts: u32,
}

impl PushConsumerBuilder {
    /// Adds a subscription.
    pub fn subscribe(mut self, topic: impl Into<String>, filter: Filter) -> Self {
        self.subscriptions.push((topic.into(), filter));
        self
    }

    /// Listener calls in flight at most (default 16).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// Forces FIFO mode on or off; by default it follows the group's setting on the broker.
    pub fn fifo(mut self, on: bool) -> Self {
        self.fifo = Some(on);
        self
    }

    /// How long received messages stay invisible while the listener works (default 30 s).
    pub fn invisible_duration(mut self, d: Duration) -> Self {
        self.invisible = d;
        self
    }

    /// In FIFO mode, how often a failed message is retried in place before its group's
    /// batch is given back to the broker (default 3).
    pub fn local_attempts(mut self, n: u32) -> Self {
        self.local_attempts = n.max(1);
        self
    }

    /// Starts consuming: `listener` is called for each message.
    pub async fn start<F, Fut>(self, listener: F) -> Result<PushConsumer, ClientError>
    where
        F: Fn(ReceivedMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ConsumeResult> + Send + 'static,
    {
        let base = start_consumer(
            self.config,
            pb::ClientType::PushConsumer,
            &self.group,
            &self.subscriptions,
            false,
        )
        .await?;
        // The group's FIFO flag comes in the Settings reply: wait for it before reading.
        if self.fifo.is_none() && !base.settings_answered().await {
            tracing::warn!("no Settings reply yet; consuming as a non-FIFO group until one comes");
        }
        let listener: Listener = Arc::new(move |m| Box::pin(listener(m)));
        let inner = Arc::new(Inner {
            base,
            subscriptions: self.subscriptions,
            permits: Arc::new(Semaphore::new(self.max_concurrency)),
            max_concurrency: self.max_concurrency,
            fifo: self.fifo,
            invisible: self.invisible,
            local_attempts: self.local_attempts,
            listener,
            readers: Mutex::new(BTreeMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        let scan = tokio::spawn(async move {
            loop {
                let Some(i) = weak.upgrade() else { return };
                i.rebalance().await;
                drop(i);
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        inner.base.track(scan);
        Ok(PushConsumer { inner })
    }
}

struct Inner {
    base: Arc<Base>,
    subscriptions: Vec<(String, Filter)>,
    permits: Arc<Semaphore>,
    max_concurrency: usize,
    fifo: Option<bool>,
    invisible: Duration,
    local_attempts: u32,
    listener: Listener,
    /// One reader task per assigned (topic, broker, queue).
    readers: Mutex<BTreeMap<(String, String, i32), JoinHandle<()>>>,
}

/// A consumer that calls a listener for each message and acknowledges it on success.
///
/// ```no_run
/// # async fn demo() -> Result<(), raftmq_client::ClientError> {
/// use raftmq_client::{ClientConfig, ConsumeResult, Filter, PushConsumer};
/// let consumer = PushConsumer::builder(ClientConfig::new("127.0.0.1:8081"), "billing")
///     .subscribe("orders", Filter::All)
///     .max_concurrency(8)
///     .start(|m| async move {
///         println!("got {}", m.message_id);
///         ConsumeResult::Success
///     })
///     .await?;
/// // ... later
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct PushConsumer {
    inner: Arc<Inner>,
}

impl PushConsumer {
    /// A builder for consumer group `group`.
    pub fn builder(config: ClientConfig, group: impl Into<String>) -> PushConsumerBuilder {
        PushConsumerBuilder {
            config,
            group: group.into(),
            subscriptions: Vec::new(),
            max_concurrency: 16,
            fifo: None,
            invisible: Duration::from_secs(30),
            local_attempts: 3,
        }
    }

    /// This client's id (`x-mq-client-id`).
    pub fn client_id(&self) -> &str {
        &self.inner.base.rpc.client_id
    }

    /// Stops receiving, waits (up to the invisible duration) for listener calls in flight
    /// to finish and be acknowledged, then sends NotifyClientTermination.
    pub async fn shutdown(self) {
        let readers = std::mem::take(&mut *self.inner.readers.lock().unwrap());
        for (_, h) in readers {
            h.abort();
        }
        let all = self.inner.max_concurrency as u32;
        let _ =
            tokio::time::timeout(self.inner.invisible, self.inner.permits.acquire_many(all)).await;
        self.inner.base.shutdown().await;
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        for (_, h) in std::mem::take(&mut *self.inner.readers.lock().unwrap()) {
            h.abort();
        }
        self.inner.base.abort_background();
    }
}

impl Inner {
    fn fifo(&self) -> bool {
        self.fifo
            .or(self.base.server.lock().unwrap().fifo)
            .unwrap_or(false)
    }

    /// Asks for this client's assignments and starts/stops readers to match.
    async fn rebalance(self: &Arc<Self>) {
        if self.base.check_open().is_err() {
            return;
        }
        let mut wanted: BTreeMap<(String, String, i32), (Queue, Filter)> = BTreeMap::new();
        for (topic, filter) in &self.subscriptions {
            match self.assignments(topic).await {
                Ok(qs) => {
                    for q in qs {
                        wanted.insert((topic.clone(), q.broker.clone(), q.id), (q, filter.clone()));
                    }
                }
                Err(e) => {
                    // Keep the current readers: a missed rebalance is not a reason to stop.
                    tracing::debug!(topic, error = %e, "assignment query failed");
                    let readers = self.readers.lock().unwrap();
                    for k in readers.keys().filter(|k| &k.0 == topic) {
                        wanted.entry(k.clone()).or_insert_with(|| {
                            (
                                Queue {
                                    topic: String::new(),
                                    broker: String::new(),
                                    id: 0,
                                    addrs: Vec::new(),
                                    accepts: Vec::new(),
                                },
                                filter.clone(),
                            )
                        });
                    }
                }
            }
        }
        let mut readers = self.readers.lock().unwrap();
        readers.retain(|k, h| {
            let keep = wanted.contains_key(k) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        for (k, (q, f)) in wanted {
            if readers.contains_key(&k) || q.addrs.is_empty() {
                continue;
            }
            let me = self.clone();
            readers.insert(k, tokio::spawn(async move { me.read(q, f).await }));
        }
    }

    async fn assignments(&self, topic: &str) -> Result<Vec<Queue>, ClientError> {
        let rpc = &self.base.rpc;
        let cfg = &rpc.config;
        let mut last = Failure::Retryable("no access point".into());
        for ap in &cfg.endpoints {
            let req = rpc.request(
                pb::QueryAssignmentRequest {
                    topic: rpc.resource(topic),
                    group: rpc.resource(self.base.group().unwrap_or_default()),
                    endpoints: Some(crate::route::endpoints(std::slice::from_ref(ap))),
                },
                Some(cfg.request_timeout),
            );
            let r = rpc
                .unary(ap, cfg.request_timeout, |mut s| async move {
                    s.query_assignment(req).await
                })
                .await
                .and_then(|resp| check(&resp.status).map(|()| resp.assignments));
            match r {
                Ok(a) => {
                    return Ok(a
                        .iter()
                        .filter_map(|a| a.message_queue.as_ref().and_then(Queue::from_pb))
                        .map(|mut q| {
                            q.topic = topic.to_string();
                            q
                        })
                        .collect());
                }
                Err(f) => last = f,
            }
        }
        Err(last.into_error(1))
    }

    /// Reads one assignment until stopped.
    async fn read(self: Arc<Self>, queue: Queue, filter: Filter) {
        let mut failures = 0u32;
        loop {
            if self.base.check_open().is_err() {
                return;
            }
            let fifo = self.fifo();
            // Ask for no more than can be worked on now (at least one, waiting for a slot).
            let first = match self.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            let extra = self.permits.available_permits().min(31) as u32;
            let batch = receive(&self.base, &queue, &filter, 1 + extra, self.invisible).await;
            drop(first);
            let msgs = match batch {
                Ok(m) => {
                    failures = 0;
                    m
                }
                Err(ClientError::Shutdown) => return,
                Err(e) => {
                    failures += 1;
                    let pause = self.base.rpc.config.backoff(failures + 1);
                    tracing::debug!(error = %e, ?pause, "receive failed");
                    tokio::time::sleep(pause.max(Duration::from_millis(100))).await;
                    continue;
                }
            };
            if msgs.is_empty() {
                continue;
            }
            if fifo {
                self.consume_fifo(msgs).await;
            } else {
                for m in msgs {
                    let Ok(permit) = self.permits.clone().acquire_owned().await else {
                        return;
                    };
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.consume_one(m).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn consume_one(&self, mut m: ReceivedMessage) {
        let span = tracing::debug_span!(
            "consume",
            message_id = m.message_id,
            attempt = m.delivery_attempt
        );
        match (self.listener)(m.clone()).instrument(span).await {
            ConsumeResult::Success => {
                if let Err(e) = ack(&self.base, &m).await {
                    tracing::warn!(message_id = m.message_id, error = %e, "ack failed");
                }
            }
            ConsumeResult::Failure => {
                // Come back after the group's retry backoff for this attempt (the broker
                // applies its policy), rather than after the whole invisible duration.
                if let Err(e) = nack(&self.base, &mut m).await {
                    tracing::warn!(message_id = m.message_id, error = %e, "nack failed");
                }
            }
        }
    }

    /// FIFO: messages of one group run one at a time in order (groups in parallel); a
    /// message that keeps failing stops its group's batch, and everything from it on comes
    /// back from the broker in order. Returns when the whole batch is settled.
    async fn consume_fifo(self: &Arc<Self>, msgs: Vec<ReceivedMessage>) {
        let mut groups: BTreeMap<String, Vec<ReceivedMessage>> = BTreeMap::new();
        for m in msgs {
            let key = m.message_group.clone().unwrap_or_default();
            groups.entry(key).or_default().push(m);
        }
        let tasks = groups.into_values().map(|batch| {
            let me = self.clone();
            async move {
                for m in batch {
                    let Ok(_permit) = me.permits.acquire().await else {
                        return;
                    };
                    let mut done = false;
                    for attempt in 1..=me.local_attempts {
                        if attempt > 1 {
                            tokio::time::sleep(me.base.rpc.config.backoff(attempt)).await;
                        }
                        if (me.listener)(m.clone()).await == ConsumeResult::Success {
                            done = true;
                            break;
                        }
                    }
                    if !done || ack(&me.base, &m).await.is_err() {
                        // Stop here: this message and the rest of its group come back.
                        return;
                    }
                }
            }
        });
        futures::future::join_all(tasks).await;
    }
}
