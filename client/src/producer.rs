//! The producer: single, asynchronous and batch sends with retries onto another queue for
//! failures that certainly left no message behind, an explicit "unknown" outcome for the
//! rest, FIFO message groups, delayed messages, and transactions with a checker callback.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use raftmq_proto::v2 as pb;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::base::Base;
use crate::base::Role;
pub use crate::checker::TransactionChecker;
pub use crate::checker::TransactionResolution;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::error::Failure;
use crate::message::Message;
use crate::message::MessageKind;
use crate::message::SendReceipt;
use crate::message::new_message_id;
use crate::route::Queue;
use crate::rpc::Rpc;

/// Builds a [`Producer`].
pub struct ProducerBuilder {
    config: ClientConfig,
    topics: Vec<String>,
    checker: Option<Arc<dyn TransactionChecker>>,
}

impl ProducerBuilder {
    /// Topics this producer sends to: their routes are fetched at start, and the broker
    /// knows to send transaction checks for them to this producer.
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Installs the checker answering the broker's transaction checks.
    pub fn transaction_checker(mut self, checker: impl TransactionChecker) -> Self {
        self.checker = Some(Arc::new(checker));
        self
    }

    /// Validates the configuration, opens the first Telemetry session and fetches the
    /// routes of the declared topics.
    pub async fn start(self) -> Result<Producer, ClientError> {
        let rpc = Rpc::new(self.config)?;
        let base = Base::start(
            rpc,
            Role::Producer {
                topics: self.topics.clone(),
            },
            self.checker,
        );
        for t in &self.topics {
            if let Err(e) = base.routes.get(t).await {
                base.shutdown().await;
                return Err(e);
            }
        }
        Ok(Producer {
            inner: Arc::new(Inner {
                base,
                next: AtomicUsize::new(crate::rt::random_u64() as usize),
            }),
        })
    }
}

struct Inner {
    base: Arc<Base>,
    /// Round-robin position over queues.
    next: AtomicUsize,
}

/// Sends messages. Dropping it stops its background work; [`Producer::shutdown`] also tells
/// the brokers.
///
/// ```no_run
/// # async fn demo() -> Result<(), raftmq_client::ClientError> {
/// use raftmq_client::{ClientConfig, Message, Producer};
/// let producer = Producer::builder(ClientConfig::new("127.0.0.1:8081"))
///     .topics(["orders"])
///     .start()
///     .await?;
/// let receipt = producer.send(Message::new("orders", b"hello".to_vec())).await?;
/// println!("stored as {} at offset {}", receipt.message_id, receipt.offset);
/// producer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Producer {
    inner: Arc<Inner>,
}

/// A send running in the background, from [`Producer::send_async`]; await it for the
/// outcome.
pub struct SendHandle(JoinHandle<Result<SendReceipt, ClientError>>);

impl std::future::Future for SendHandle {
    type Output = Result<SendReceipt, ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| {
            r.unwrap_or_else(|e| {
                Err(ClientError::Unknown {
                    attempts: 0,
                    last: format!("the send task ended abnormally: {e}"),
                })
            })
        })
    }
}

impl Producer {
    /// A builder over `config`.
    pub fn builder(config: ClientConfig) -> ProducerBuilder {
        ProducerBuilder {
            config,
            topics: Vec::new(),
            checker: None,
        }
    }

    /// This client's id (`x-mq-client-id`).
    pub fn client_id(&self) -> &str {
        &self.inner.base.rpc.client_id
    }

    /// Sends one message and waits for the broker's acknowledgement: once this returns
    /// `Ok`, the message is committed on a majority of its group.
    ///
    /// Failures that certainly stored nothing are retried (with backoff, on another queue,
    /// after a route refresh) up to `max_attempts`. A failure whose outcome is unknown
    /// returns [`ClientError::Unknown`] unless `retry_unknown` is set.
    pub async fn send(&self, message: Message) -> Result<SendReceipt, ClientError> {
        let mut r = self.inner.send(vec![message], false).await?;
        Ok(r.remove(0))
    }

    /// Starts sending `message` in the background; many sends can be in flight at once.
    pub fn send_async(&self, message: Message) -> SendHandle {
        let inner = self.inner.clone();
        SendHandle(tokio::spawn(async move {
            let mut r = inner.send(vec![message], false).await?;
            Ok(r.remove(0))
        }))
    }

    /// Sends messages of one topic (and one kind; one message group for FIFO) in one
    /// request. Receipts come back in order. Messages already stored are not resent when
    /// others of the batch are retried.
    pub async fn send_batch(
        &self,
        messages: Vec<Message>,
    ) -> Result<Vec<SendReceipt>, ClientError> {
        self.inner.send(messages, false).await
    }

    /// Cancels a message sent with a delivery time ([`Message::with_delay`]) before it is
    /// delivered: once this returns `Ok`, no consumer will ever receive it. A message already
    /// delivered (or recalled) cannot be: [`ClientError::Refused`] with code NOT_FOUND. A
    /// recall whose answer was lost is retried; if the first attempt did recall the message,
    /// the retry is answered NOT_FOUND too.
    pub async fn recall(&self, topic: &str, receipt: &SendReceipt) -> Result<(), ClientError> {
        let base = &self.inner.base;
        base.check_open()?;
        let handle = receipt.recall_handle.clone().ok_or_else(|| {
            ClientError::InvalidMessage(
                "the message has no recall handle (no delivery time)".into(),
            )
        })?;
        let cfg = &base.rpc.config;
        let mut last = Failure::Retryable("not tried".into());
        let mut maybe_done = false;
        for attempt in 1..=cfg.max_attempts {
            tokio::time::sleep(cfg.backoff(attempt)).await;
            let req = base.rpc.request(
                pb::RecallMessageRequest {
                    topic: base.rpc.resource(topic),
                    recall_handle: handle.clone(),
                },
                Some(cfg.request_timeout),
            );
            let res = base
                .rpc
                .unary(&receipt.endpoint, cfg.request_timeout, |mut s| async move {
                    s.recall_message(req).await
                })
                .await
                .and_then(|resp| crate::rpc::check(&resp.status));
            match res {
                Ok(()) => return Ok(()),
                Err(f @ Failure::Retryable(_)) => last = f,
                Err(f @ Failure::Ambiguous(_)) => {
                    maybe_done = true;
                    last = f;
                }
                // NOT_FOUND after an attempt that may have recalled it: that attempt may be
                // why (the outcome is unknown, not refused).
                Err(Failure::Refused { code, message })
                    if maybe_done && code == pb::Code::NotFound as i32 =>
                {
                    return Err(Failure::Ambiguous(message).into_error(attempt));
                }
                Err(f) => return Err(f.into_error(attempt)),
            }
        }
        Err(last.given_up(maybe_done).into_error(cfg.max_attempts))
    }

    /// Begins a transaction: its messages stay invisible until [`Transaction::commit`].
    pub fn begin_transaction(&self) -> Transaction {
        Transaction {
            inner: self.inner.clone(),
            sent: Vec::new(),
        }
    }

    /// Stops background work and sends NotifyClientTermination to every endpoint used.
    pub async fn shutdown(self) {
        self.inner.base.shutdown().await;
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.inner.base.abort_background();
    }
}

/// A transaction: half messages sent with [`Transaction::send`], then committed or rolled
/// back as one. If the producer dies first, the broker asks the producer group's
/// [`TransactionChecker`].
pub struct Transaction {
    inner: Arc<Inner>,
    sent: Vec<(String, SendReceipt)>,
}

impl Transaction {
    /// Sends a half message (no message group or delivery time allowed).
    pub async fn send(&mut self, message: Message) -> Result<SendReceipt, ClientError> {
        let topic = message.topic().to_string();
        let receipt = self.inner.send(vec![message], true).await?.remove(0);
        if receipt.transaction_id.as_deref().unwrap_or("").is_empty() {
            return Err(ClientError::Refused {
                code: pb::Code::InvalidTransactionId as i32,
                message: "the broker returned no transaction id".into(),
            });
        }
        self.sent.push((topic, receipt.clone()));
        Ok(receipt)
    }

    /// Makes every message of the transaction visible.
    pub async fn commit(self) -> Result<(), ClientError> {
        self.end(pb::TransactionResolution::Commit).await
    }

    /// Discards every message of the transaction.
    pub async fn rollback(self) -> Result<(), ClientError> {
        self.end(pb::TransactionResolution::Rollback).await
    }

    async fn end(self, resolution: pb::TransactionResolution) -> Result<(), ClientError> {
        let base = &self.inner.base;
        base.check_open()?;
        let cfg = &base.rpc.config;
        for (topic, r) in &self.sent {
            let span =
                tracing::info_span!("end_transaction", message_id = r.message_id, ?resolution);
            let mut last = Failure::Retryable("not tried".into());
            let mut done = false;
            let mut maybe_done = false;
            for attempt in 1..=cfg.max_attempts {
                tokio::time::sleep(cfg.backoff(attempt)).await;
                let req = base.rpc.request(
                    pb::EndTransactionRequest {
                        topic: base.rpc.resource(topic),
                        message_id: r.message_id.clone(),
                        transaction_id: r.transaction_id.clone().unwrap_or_default(),
                        resolution: resolution as i32,
                        source: pb::TransactionSource::SourceClient as i32,
                        trace_context: String::new(),
                    },
                    Some(cfg.request_timeout),
                );
                let res = base
                    .rpc
                    .unary(&r.endpoint, cfg.request_timeout, |mut s| async move {
                        s.end_transaction(req).await
                    })
                    .instrument(span.clone())
                    .await
                    .and_then(|resp| crate::rpc::check(&resp.status));
                match res {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    // Ending a transaction twice is harmless, so unknown outcomes are retried.
                    Err(f @ (Failure::Retryable(_) | Failure::Ambiguous(_))) => {
                        maybe_done |= matches!(f, Failure::Ambiguous(_));
                        last = f;
                    }
                    Err(f) => return Err(f.into_error(attempt)),
                }
            }
            if !done {
                return Err(last.given_up(maybe_done).into_error(cfg.max_attempts));
            }
        }
        Ok(())
    }
}

/// A stable hash for picking a FIFO group's queue (the broker re-hashes anyway).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Inner {
    async fn send(
        &self,
        messages: Vec<Message>,
        transactional: bool,
    ) -> Result<Vec<SendReceipt>, ClientError> {
        let base = &self.base;
        base.check_open()?;
        let first = messages
            .first()
            .ok_or_else(|| ClientError::InvalidMessage("nothing to send".into()))?;
        let topic = first.topic().to_string();
        let kind = if transactional {
            MessageKind::Transaction
        } else {
            first.kind()
        };
        for m in &messages {
            m.validate(transactional)?;
            if m.topic() != topic || m.message_group() != first.message_group() {
                return Err(ClientError::InvalidMessage(
                    "a batch must share its topic and message group".into(),
                ));
            }
            if !transactional && m.kind() != kind {
                return Err(ClientError::InvalidMessage(
                    "a batch must share its message kind".into(),
                ));
            }
        }
        let ids: Vec<String> = messages
            .iter()
            .map(|m| m.message_id().map_or_else(new_message_id, str::to_string))
            .collect();
        let span = tracing::info_span!(
            "send",
            topic,
            messages = messages.len(),
            first_id = ids[0].as_str()
        );
        self.send_with_retries(&topic, kind, &messages, &ids, transactional)
            .instrument(span)
            .await
    }

    async fn send_with_retries(
        &self,
        topic: &str,
        kind: MessageKind,
        messages: &[Message],
        ids: &[String],
        transactional: bool,
    ) -> Result<Vec<SendReceipt>, ClientError> {
        let base = &self.base;
        let cfg = &base.rpc.config;
        let wire_kind = wire_kind(kind);
        let mut receipts: Vec<Option<SendReceipt>> = vec![None; messages.len()];
        let mut last = Failure::Retryable("not tried".into());
        // Some attempt may have stored messages (with `retry_unknown`, sends are retried).
        let mut maybe_done = false;
        // The queue of the first attempt whose outcome is unknown.
        let mut stay: Option<(String, i32)> = None;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for attempt in 1..=cfg.max_attempts {
            tokio::time::sleep(cfg.backoff(attempt)).await;
            let route = if attempt == 1 {
                base.routes.get(topic).await?
            } else {
                base.routes.refresh(topic).await?
            };
            let queues: Vec<&Queue> = route
                .iter()
                .filter(|q| q.accepts.is_empty() || q.accepts.contains(&wire_kind))
                .collect();
            if queues.is_empty() {
                return Err(ClientError::Refused {
                    code: pb::Code::MessagePropertyConflictWithType as i32,
                    message: format!("topic {topic} accepts no {kind:?} messages"),
                });
            }
            // FIFO stays on its group's queue; anything else moves to the next queue, except
            // after an unknown outcome: the resend goes where the first copy may be, so the
            // broker's deduplication window answers it with the first copy's receipt.
            let again = stay.as_ref().and_then(|(broker, id)| {
                queues
                    .iter()
                    .position(|q| q.broker == *broker && q.id == *id)
            });
            let qi = match (messages[0].message_group(), again) {
                (Some(g), _) => fnv1a(g) as usize,
                (None, Some(i)) => i,
                (None, None) => start.wrapping_add(attempt as usize - 1),
            } % queues.len();
            let q = queues[qi];
            // The leader is listed first; later attempts try the other members.
            let addr = q.addrs[(attempt as usize - 1) % q.addrs.len()].clone();
            base.ensure_session(&addr);
            let pending: Vec<usize> = (0..messages.len())
                .filter(|i| receipts[*i].is_none())
                .collect();
            let req = base.rpc.request(
                pb::SendMessageRequest {
                    messages: pending
                        .iter()
                        .map(|i| messages[*i].to_pb(&cfg.namespace, &ids[*i], q.id, transactional))
                        .collect(),
                },
                Some(cfg.request_timeout),
            );
            let resp = base
                .rpc
                .unary(&addr, cfg.request_timeout, |mut s| async move {
                    let r = s.send_message(req).await?;
                    let places = stored_in(r.metadata());
                    Ok(r.map(|inner| (inner, places)))
                })
                .await;
            let (resp, places) = match resp {
                Ok(r) => r,
                Err(f) => {
                    tracing::debug!(attempt, addr, ?f, "send attempt failed");
                    if is_final(&f, cfg.retry_unknown) {
                        return Err(f.into_error(attempt));
                    }
                    if matches!(f, Failure::Ambiguous(_)) {
                        maybe_done = true;
                        stay.get_or_insert_with(|| (q.broker.clone(), q.id));
                    }
                    last = f;
                    continue;
                }
            };
            if resp.entries.len() != pending.len() {
                // Without one entry per message nothing can be said about any of them.
                last = match crate::rpc::check(&resp.status) {
                    Err(f @ (Failure::Refused { .. } | Failure::Retryable(_))) => f,
                    _ => Failure::Ambiguous(format!(
                        "{} entries for {} messages",
                        resp.entries.len(),
                        pending.len()
                    )),
                };
                if is_final(&last, cfg.retry_unknown) {
                    return Err(last.into_error(attempt));
                }
                if matches!(last, Failure::Ambiguous(_)) {
                    maybe_done = true;
                    stay.get_or_insert_with(|| (q.broker.clone(), q.id));
                }
                continue;
            }
            match absorb(&pending, resp.entries, &mut receipts, ids, (&addr, &places)) {
                None => return Ok(receipts.into_iter().map(Option::unwrap).collect()),
                Some(f) if is_final(&f, cfg.retry_unknown) => return Err(f.into_error(attempt)),
                Some(f) => {
                    tracing::debug!(attempt, addr, ?f, "send attempt refused for now");
                    if matches!(f, Failure::Ambiguous(_)) {
                        maybe_done = true;
                        stay.get_or_insert_with(|| (q.broker.clone(), q.id));
                    }
                    last = f;
                }
            }
        }
        Err(last.given_up(maybe_done).into_error(cfg.max_attempts))
    }
}

fn wire_kind(kind: MessageKind) -> i32 {
    kind.to_pb() as i32
}

/// A failure no further attempt may follow: a refusal, or an unknown outcome unless unknown
/// sends are retried (with the same id).
fn is_final(f: &Failure, retry_unknown: bool) -> bool {
    match f {
        Failure::Refused { .. } => true,
        Failure::Ambiguous(_) => !retry_unknown,
        _ => false,
    }
}

/// Records a receipt for every entry that succeeded; returns the worst failure among the
/// others (a refusal over an unknown outcome over a retryable one), if any.
fn absorb(
    pending: &[usize],
    entries: Vec<pb::SendResultEntry>,
    receipts: &mut [Option<SendReceipt>],
    ids: &[String],
    (addr, places): (&str, &[Option<(String, i32)>]),
) -> Option<Failure> {
    let mut worst: Option<Failure> = None;
    for (k, (i, e)) in pending.iter().zip(entries).enumerate() {
        match crate::rpc::check(&e.status) {
            Ok(()) => {
                receipts[*i] = Some(SendReceipt {
                    message_id: if e.message_id.is_empty() {
                        ids[*i].clone()
                    } else {
                        e.message_id
                    },
                    offset: e.offset,
                    transaction_id: (!e.transaction_id.is_empty()).then_some(e.transaction_id),
                    endpoint: addr.to_string(),
                    stored_in: places.get(k).cloned().flatten(),
                    recall_handle: (!e.recall_handle.is_empty()).then_some(e.recall_handle),
                });
            }
            Err(f) => {
                worst = Some(match (worst, f) {
                    (Some(r @ Failure::Refused { .. }), _) | (_, r @ Failure::Refused { .. }) => r,
                    (Some(a @ Failure::Ambiguous(_)), _) | (_, a @ Failure::Ambiguous(_)) => a,
                    (_, f) => f,
                });
            }
        }
    }
    worst
}

/// Where a RaftMQ broker says each message of a send went (its `x-raftmq-stored-in` header:
/// `<broker>/<queue>` per entry, `-` when not stored); empty when the header is absent, as
/// with other servers.
fn stored_in(meta: &tonic::metadata::MetadataMap) -> Vec<Option<(String, i32)>> {
    let Some(v) = meta.get("x-raftmq-stored-in").and_then(|v| v.to_str().ok()) else {
        return Vec::new();
    };
    v.split(' ')
        .map(|p| {
            let (broker, queue) = p.rsplit_once('/')?;
            Some((broker.to_string(), queue.parse().ok()?))
        })
        .collect()
}
