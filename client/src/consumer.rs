//! The simple consumer — receive, ack, change invisible duration — and the receive/ack
//! calls the push consumer reuses.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::receive_message_response::Content;
use raftmq_proto::v2util;
use tracing::Instrument;

use crate::base::Base;
use crate::base::Role;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::error::Failure;
use crate::message::ReceivedMessage;
use crate::route::Queue;
use crate::rpc::Rpc;
use crate::rpc::check;

/// Which messages of a topic a consumer wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every message.
    All,
    /// Messages whose tag is one of these (`"a || b"` in RocketMQ's notation).
    Tags(Vec<String>),
    /// An SQL92 expression over the message's properties and its `TAGS` and `KEYS`.
    Sql(String),
}

impl Filter {
    pub(crate) fn to_pb(&self) -> pb::FilterExpression {
        let (t, e) = match self {
            Filter::All => (pb::FilterType::Tag, "*".to_string()),
            Filter::Tags(tags) => (pb::FilterType::Tag, tags.join("||")),
            Filter::Sql(s) => (pb::FilterType::Sql, s.clone()),
        };
        pb::FilterExpression {
            r#type: t as i32,
            expression: e,
        }
    }
}

/// Builds a [`SimpleConsumer`].
pub struct SimpleConsumerBuilder {
    config: ClientConfig,
    group: String,
    subscriptions: Vec<(String, Filter)>,
}

impl SimpleConsumerBuilder {
    /// Adds a subscription.
    pub fn subscribe(mut self, topic: impl Into<String>, filter: Filter) -> Self {
        self.subscriptions.push((topic.into(), filter));
        self
    }

    /// Validates, opens the first Telemetry session and fetches the subscribed routes.
    pub async fn start(self) -> Result<SimpleConsumer, ClientError> {
        let base = start_consumer(
            self.config,
            pb::ClientType::SimpleConsumer,
            &self.group,
            &self.subscriptions,
            false,
        )
        .await?;
        Ok(SimpleConsumer {
            base,
            subscriptions: self.subscriptions,
            next: AtomicUsize::new(0),
        })
    }
}

pub(crate) async fn start_consumer(
    config: ClientConfig,
    kind: pb::ClientType,
    group: &str,
    subscriptions: &[(String, Filter)],
    may_be_empty: bool,
) -> Result<Arc<Base>, ClientError> {
    if group.trim().is_empty() {
        return Err(ClientError::Config(
            "consumer group must not be empty".into(),
        ));
    }
    if subscriptions.is_empty() && !may_be_empty {
        return Err(ClientError::Config(
            "subscribe to at least one topic".into(),
        ));
    }
    let rpc = Rpc::new(config)?;
    let base = Base::start(
        rpc,
        Role::Consumer {
            kind,
            group: group.to_string(),
            subscriptions: subscriptions
                .iter()
                .map(|(t, f)| (t.clone(), f.to_pb()))
                .collect(),
        },
        None,
    );
    for (t, _) in subscriptions {
        if let Err(e) = base.routes.get(t).await {
            base.shutdown().await;
            return Err(e);
        }
    }
    Ok(base)
}

/// A consumer that receives and acknowledges explicitly. A received message stays
/// invisible to other consumers of the group for the invisible duration; unacknowledged, it
/// is delivered again (with `delivery_attempt` + 1).
///
/// ```no_run
/// # async fn demo() -> Result<(), raftmq_client::ClientError> {
/// use std::time::Duration;
/// use raftmq_client::{ClientConfig, Filter, SimpleConsumer};
/// let consumer = SimpleConsumer::builder(ClientConfig::new("127.0.0.1:8081"), "billing")
///     .subscribe("orders", Filter::All)
///     .start()
///     .await?;
/// for m in consumer.receive(16, Duration::from_secs(30)).await? {
///     println!("{}: {:?}", m.message_id, m.body);
///     consumer.ack(&m).await?;
/// }
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
pub struct SimpleConsumer {
    base: Arc<Base>,
    subscriptions: Vec<(String, Filter)>,
    next: AtomicUsize,
}

impl SimpleConsumer {
    /// A builder for consumer group `group`.
    pub fn builder(config: ClientConfig, group: impl Into<String>) -> SimpleConsumerBuilder {
        SimpleConsumerBuilder {
            config,
            group: group.into(),
            subscriptions: Vec::new(),
        }
    }

    /// This client's id (`x-mq-client-id`).
    pub fn client_id(&self) -> &str {
        &self.base.rpc.client_id
    }

    /// Receives up to `max` messages, waiting up to the long-polling timeout when none is
    /// ready; an empty result means none arrived. Subscriptions and brokers are taken in
    /// turn.
    pub async fn receive(
        &self,
        max: u32,
        invisible: Duration,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        self.base.check_open()?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (topic, filter) = &self.subscriptions[n % self.subscriptions.len()];
        let route = self.base.routes.get(topic).await?;
        let mut brokers: Vec<&Queue> = Vec::new();
        for q in route.iter() {
            if !brokers.iter().any(|b| b.broker == q.broker) {
                brokers.push(q);
            }
        }
        let q = brokers[(n / self.subscriptions.len()) % brokers.len()];
        let mut any = q.clone();
        any.id = -1;
        receive(&self.base, &any, filter, max, invisible).await
    }

    /// Acknowledges `message`: it will not be delivered again.
    pub async fn ack(&self, message: &ReceivedMessage) -> Result<(), ClientError> {
        ack(&self.base, message).await
    }

    /// Changes how long `message` stays invisible, counting from now; its receipt handle is
    /// replaced (the old one no longer acks).
    pub async fn change_invisible_duration(
        &self,
        message: &mut ReceivedMessage,
        invisible: Duration,
    ) -> Result<(), ClientError> {
        change_invisible_duration(&self.base, message, invisible).await
    }

    /// Reports that processing `message` failed: it comes back after the consumer group's
    /// retry backoff for this attempt (the group's policy, set with `raftmq admin group`; RocketMQ's
    /// default steps are 1 s, 5 s, 10 s, 30 s, ...), or goes to the dead-letter topic once its
    /// attempts run out. Its receipt handle is replaced (the old one no longer acks).
    pub async fn nack(&self, message: &mut ReceivedMessage) -> Result<(), ClientError> {
        nack(&self.base, message).await
    }

    /// Gives `message` up: the broker moves it to the group's dead-letter topic
    /// (`%DLQ%<group>`) and its delivery ends as if acknowledged (v2
    /// `ForwardMessageToDeadLetterQueue`, what a FIFO consumer does once its local retries
    /// run out). OK too if the delivery had ended already (acknowledged, forwarded, or
    /// delivered again after its invisibility ran out): nothing is moved then.
    pub async fn forward_to_dead_letter_queue(
        &self,
        message: &ReceivedMessage,
    ) -> Result<(), ClientError> {
        forward_to_dead_letter_queue(&self.base, message).await
    }

    /// Stops background work and sends NotifyClientTermination to every endpoint used.
    pub async fn shutdown(self) {
        self.base.shutdown().await;
    }
}

impl Drop for SimpleConsumer {
    fn drop(&mut self) {
        self.base.abort_background();
    }
}

/// One receive from `queue` (id -1: any queue of its broker), trying its addresses in turn
/// on failures that certainly delivered nothing.
pub(crate) async fn receive(
    base: &Arc<Base>,
    queue: &Queue,
    filter: &Filter,
    max: u32,
    invisible: Duration,
) -> Result<Vec<ReceivedMessage>, ClientError> {
    let cfg = &base.rpc.config;
    let group = base.group().unwrap_or_default().to_string();
    let span = tracing::debug_span!("receive", group, topic = queue.topic, broker = queue.broker);
    async {
        let mut last = Failure::Retryable("not tried".into());
        for attempt in 1..=cfg.max_attempts {
            tokio::time::sleep(cfg.backoff(attempt)).await;
            let addr = queue.addrs[(attempt as usize - 1) % queue.addrs.len()].clone();
            base.ensure_session(&addr);
            let timeout = cfg.long_polling_timeout + cfg.request_timeout;
            let req = base.rpc.request(
                pb::ReceiveMessageRequest {
                    group: base.rpc.resource(&group),
                    message_queue: Some(queue.to_pb(&base.rpc)),
                    filter_expression: Some(filter.to_pb()),
                    batch_size: max.clamp(1, 1024) as i32,
                    invisible_duration: Some(v2util::to_pb_duration(invisible)),
                    auto_renew: false,
                    long_polling_timeout: Some(v2util::to_pb_duration(cfg.long_polling_timeout)),
                    attempt_id: None,
                },
                Some(timeout),
            );
            let call = async {
                let mut stub = base.rpc.stub(&addr)?;
                let mut stream = stub
                    .receive_message(req)
                    .await
                    .map_err(|s| Failure::from_grpc(&s))?
                    .into_inner();
                let mut status = None;
                let mut msgs = Vec::new();
                while let Some(r) = stream.message().await.map_err(|s| Failure::from_grpc(&s))? {
                    match r.content {
                        Some(Content::Status(s)) => status = Some(s),
                        Some(Content::Message(m)) => msgs.push(m),
                        _ => {}
                    }
                }
                Ok::<_, Failure>((status, msgs))
            };
            let (status, msgs) = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(r)) => r,
                Ok(Err(f)) => {
                    last = f;
                    if let Failure::Refused { .. } = last {
                        return Err(last.into_error(attempt));
                    }
                    // A receive that may have popped messages is harmless to retry: what it
                    // popped comes back after the invisible duration.
                    continue;
                }
                Err(_) => {
                    last = Failure::Ambiguous(format!("no answer from {addr} within {timeout:?}"));
                    continue;
                }
            };
            if status
                .as_ref()
                .is_some_and(|s| s.code == pb::Code::MessageNotFound as i32)
            {
                return Ok(Vec::new());
            }
            // Messages arrive before the status; keep them even if the status is odd.
            if let Err(f) = check(&status)
                && msgs.is_empty()
            {
                if let Failure::Refused { .. } = f {
                    return Err(f.into_error(attempt));
                }
                last = f;
                continue;
            }
            let mut out = Vec::with_capacity(msgs.len());
            for m in msgs {
                match ReceivedMessage::from_pb(m, &queue.broker, &addr) {
                    Ok(m) => out.push(m),
                    // Left unacked: it comes back, and after enough attempts goes to the
                    // dead-letter queue.
                    Err(e) => tracing::error!(error = %e, "dropping a corrupted message"),
                }
            }
            return Ok(out);
        }
        Err(last.into_error(cfg.max_attempts))
    }
    .instrument(span)
    .await
}

/// Addresses to try for an operation on `message`: where it came from, then its broker's
/// other members, then the access points (any node forwards).
async fn addresses_for(base: &Base, message: &ReceivedMessage) -> Vec<String> {
    let mut addrs = vec![message.endpoint.clone()];
    if let Ok(route) = base.routes.get(&message.topic).await {
        for q in route.iter().filter(|q| q.broker == message.broker) {
            addrs.extend(q.addrs.iter().cloned());
        }
    }
    addrs.extend(base.rpc.config.endpoints.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    addrs.retain(|a| seen.insert(a.clone()));
    addrs
}

/// Runs `op` against the addresses that serve `message`, in turn, until one answers. Failures
/// that may have taken effect are retried too; if a retry then finds the receipt stale, the
/// earlier attempt may have succeeded, so the answer is Unknown rather than a refusal.
async fn on_message<T, F, Fut>(
    base: &Base,
    message: &ReceivedMessage,
    what: &str,
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    base.check_open()?;
    let cfg = &base.rpc.config;
    let addrs = addresses_for(base, message).await;
    let mut last = Failure::Retryable("not tried".into());
    let mut maybe_done = false;
    for attempt in 1..=cfg.max_attempts {
        tokio::time::sleep(cfg.backoff(attempt)).await;
        match op(addrs[(attempt as usize - 1) % addrs.len()].clone()).await {
            Ok(v) => return Ok(v),
            Err(f @ Failure::Refused { code, .. }) => {
                if maybe_done && code == pb::Code::InvalidReceiptHandle as i32 {
                    return Err(ClientError::Unknown {
                        attempts: attempt,
                        last: format!("an earlier attempt may have {what}"),
                    });
                }
                return Err(f.into_error(attempt));
            }
            Err(f) => {
                maybe_done |= matches!(f, Failure::Ambiguous(_));
                last = f;
            }
        }
    }
    Err(last.given_up(maybe_done).into_error(cfg.max_attempts))
}

pub(crate) async fn ack(base: &Base, message: &ReceivedMessage) -> Result<(), ClientError> {
    let rpc = &base.rpc;
    let t = rpc.config.request_timeout;
    let msg = pb::AckMessageRequest {
        group: rpc.resource(base.group().unwrap_or_default()),
        topic: rpc.resource(&message.topic),
        entries: vec![pb::AckMessageEntry {
            message_id: message.message_id.clone(),
            receipt_handle: message.receipt_handle.clone(),
            lite_topic: None,
        }],
    };
    let span = tracing::debug_span!("ack", message_id = message.message_id);
    on_message(base, message, "acknowledged the message", |addr| {
        let req = rpc.request(msg.clone(), Some(t));
        let span = span.clone();
        async move {
            let resp = rpc
                .unary(&addr, t, |mut s| async move { s.ack_message(req).await })
                .instrument(span)
                .await?;
            check(&resp.status)?;
            resp.entries.iter().try_for_each(|e| check(&e.status))
        }
    })
    .await
}

pub(crate) async fn change_invisible_duration(
    base: &Base,
    message: &mut ReceivedMessage,
    invisible: Duration,
) -> Result<(), ClientError> {
    change_invisibility(base, message, invisible, false).await
}

/// A failed delivery: a ChangeInvisibleDuration the broker answers with the group's backoff
/// (header `x-raftmq-nack`). The request still carries a growing duration of its own, which a
/// broker that does not know the header (an older one, during an upgrade) applies instead of
/// making the message visible at once.
pub(crate) async fn nack(base: &Base, message: &mut ReceivedMessage) -> Result<(), ClientError> {
    let secs = [1u64, 5, 10, 30, 60, 120][(message.delivery_attempt.max(1) as usize - 1).min(5)];
    change_invisibility(base, message, Duration::from_secs(secs), true).await
}

async fn change_invisibility(
    base: &Base,
    message: &mut ReceivedMessage,
    invisible: Duration,
    nack: bool,
) -> Result<(), ClientError> {
    let rpc = &base.rpc;
    let t = rpc.config.request_timeout;
    let msg = pb::ChangeInvisibleDurationRequest {
        group: rpc.resource(base.group().unwrap_or_default()),
        topic: rpc.resource(&message.topic),
        receipt_handle: message.receipt_handle.clone(),
        invisible_duration: Some(v2util::to_pb_duration(invisible)),
        message_id: message.message_id.clone(),
        lite_topic: None,
        suspend: None,
    };
    let handle = on_message(base, message, "changed the invisible duration", |addr| {
        let mut req = rpc.request(msg.clone(), Some(t));
        if nack {
            req.metadata_mut().insert(
                "x-raftmq-nack",
                tonic::metadata::MetadataValue::from_static("true"),
            );
        }
        async move {
            let resp = rpc
                .unary(&addr, t, |mut s| async move {
                    s.change_invisible_duration(req).await
                })
                .await?;
            check(&resp.status).map(|()| resp.receipt_handle)
        }
    })
    .await?;
    message.receipt_handle = handle;
    Ok(())
}

pub(crate) async fn forward_to_dead_letter_queue(
    base: &Base,
    message: &ReceivedMessage,
) -> Result<(), ClientError> {
    let rpc = &base.rpc;
    let t = rpc.config.request_timeout;
    let msg = pb::ForwardMessageToDeadLetterQueueRequest {
        group: rpc.resource(base.group().unwrap_or_default()),
        topic: rpc.resource(&message.topic),
        receipt_handle: message.receipt_handle.clone(),
        message_id: message.message_id.clone(),
        delivery_attempt: i32::try_from(message.delivery_attempt).unwrap_or(i32::MAX),
        max_delivery_attempts: 0,
        lite_topic: None,
    };
    on_message(
        base,
        message,
        "forwarded the message to the dead-letter queue",
        |addr| {
            let req = rpc.request(msg.clone(), Some(t));
            async move {
                let resp = rpc
                    .unary(&addr, t, |mut s| async move {
                        s.forward_message_to_dead_letter_queue(req).await
                    })
                    .await?;
                check(&resp.status)
            }
        },
    )
    .await
}
