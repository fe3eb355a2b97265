//! The offset-based consumer: the application picks queues and offsets (seek to the
//! beginning, the end, or a store time — backtracking), pulls from there, and commits how far
//! it got. Committed offsets are replicated and only move forward unless a commit says
//! `reset`.

use std::sync::Arc;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::pull_message_response::Content;
use raftmq_proto::v2util;

use crate::base::Base;
use crate::config::ClientConfig;
use crate::consumer::Filter;
use crate::consumer::start_consumer;
use crate::error::ClientError;
use crate::error::Failure;
use crate::message::ReceivedMessage;
use crate::route::Queue;
use crate::rpc::check;

/// Where to start reading a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The first message kept.
    Beginning,
    /// After the last message (only new messages).
    End,
    /// The first message stored at or after this time (ms since the epoch).
    Timestamp(u64),
}

/// What one pull returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Messages in queue order (filtered).
    pub messages: Vec<ReceivedMessage>,
    /// Where the next pull should start.
    pub next_offset: i64,
}

/// Builds a [`PullConsumer`].
pub struct PullConsumerBuilder {
    config: ClientConfig,
    group: String,
    topics: Vec<String>,
}

impl PullConsumerBuilder {
    /// Topics whose routes are fetched at start (others are fetched on first use).
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Validates and starts.
    pub async fn start(self) -> Result<PullConsumer, ClientError> {
        let subs: Vec<(String, Filter)> = self
            .topics
            .iter()
            .map(|t| (t.clone(), Filter::All))
            .collect();
        let base = start_consumer(
            self.config,
            pb::ClientType::PullConsumer,
            &self.group,
            &subs,
            true,
        )
        .await?;
        Ok(PullConsumer { base })
    }
}

/// Reads queues by offset.
///
/// ```no_run
/// # async fn demo() -> Result<(), raftmq_client::ClientError> {
/// use raftmq_client::{ClientConfig, Filter, PullConsumer, SeekTo};
/// let c = PullConsumer::builder(ClientConfig::new("127.0.0.1:8081"), "audit")
///     .topics(["orders"])
///     .start()
///     .await?;
/// for q in c.queues("orders").await? {
///     // Resume from the committed offset, or replay everything stored in the last hour.
///     let hour_ago = 1_800_000_000_000; // ms since the epoch
///     let mut at = match c.committed(&q).await? {
///         Some(o) => o,
///         None => c.offset_for(&q, SeekTo::Timestamp(hour_ago)).await?,
///     };
///     let got = c.pull(&q, at, 32, &Filter::All).await?;
///     at = got.next_offset;
///     c.commit(&q, at).await?;
/// }
/// c.shutdown().await;
/// # Ok(()) }
/// ```
pub struct PullConsumer {
    base: Arc<Base>,
}

impl PullConsumer {
    /// A builder for consumer group `group`.
    pub fn builder(config: ClientConfig, group: impl Into<String>) -> PullConsumerBuilder {
        PullConsumerBuilder {
            config,
            group: group.into(),
            topics: Vec::new(),
        }
    }

    /// Every queue of `topic`.
    pub async fn queues(&self, topic: &str) -> Result<Vec<Queue>, ClientError> {
        Ok(self.base.routes.get(topic).await?.as_ref().clone())
    }

    /// The offset to start from for `seek`.
    pub async fn offset_for(&self, queue: &Queue, seek: SeekTo) -> Result<i64, ClientError> {
        let (policy, ts) = match seek {
            SeekTo::Beginning => (pb::QueryOffsetPolicy::Beginning, None),
            SeekTo::End => (pb::QueryOffsetPolicy::End, None),
            SeekTo::Timestamp(ms) => (pb::QueryOffsetPolicy::Timestamp, Some(v2util::ms_to_ts(ms))),
        };
        let rpc = &self.base.rpc;
        let msg = pb::QueryOffsetRequest {
            message_queue: Some(queue.to_pb(rpc)),
            query_offset_policy: policy as i32,
            timestamp: ts,
        };
        self.on_queue(queue, |addr| {
            let req = rpc.request(msg.clone(), Some(rpc.config.request_timeout));
            let addr = addr.to_string();
            async move {
                let resp = rpc
                    .unary(&addr, rpc.config.request_timeout, |mut s| async move {
                        s.query_offset(req).await
                    })
                    .await?;
                check(&resp.status).map(|()| resp.offset)
            }
        })
        .await
    }

    /// The group's committed offset in `queue`, if it ever committed one.
    pub async fn committed(&self, queue: &Queue) -> Result<Option<i64>, ClientError> {
        let rpc = &self.base.rpc;
        let msg = pb::GetOffsetRequest {
            group: rpc.resource(self.base.group().unwrap_or_default()),
            message_queue: Some(queue.to_pb(rpc)),
        };
        self.on_queue(queue, |addr| {
            let req = rpc.request(msg.clone(), Some(rpc.config.request_timeout));
            let addr = addr.to_string();
            async move {
                let resp = rpc
                    .unary(&addr, rpc.config.request_timeout, |mut s| async move {
                        s.get_offset(req).await
                    })
                    .await?;
                match &resp.status {
                    Some(s) if s.code == pb::Code::OffsetNotFound as i32 => Ok(None),
                    other => check(other).map(|()| Some(resp.offset)),
                }
            }
        })
        .await
    }

    /// Commits `offset` (the next one to read) for the group in `queue`. Commits only move
    /// forward: an older one is ignored, so retries and reordering are harmless.
    pub async fn commit(&self, queue: &Queue, offset: i64) -> Result<(), ClientError> {
        self.update(queue, offset, false).await
    }

    /// Sets the group's offset in `queue`, backwards too (a deliberate rewind).
    pub async fn reset(&self, queue: &Queue, offset: i64) -> Result<(), ClientError> {
        self.update(queue, offset, true).await
    }

    async fn update(&self, queue: &Queue, offset: i64, reset: bool) -> Result<(), ClientError> {
        let rpc = &self.base.rpc;
        let msg = pb::UpdateOffsetRequest {
            group: rpc.resource(self.base.group().unwrap_or_default()),
            message_queue: Some(queue.to_pb(rpc)),
            offset,
        };
        // Setting an offset is idempotent, so unknown outcomes are retried too.
        self.on_queue(queue, |addr| {
            let mut req = rpc.request(msg.clone(), Some(rpc.config.request_timeout));
            if reset {
                req.metadata_mut().insert(
                    "x-raftmq-offset-reset",
                    tonic::metadata::MetadataValue::from_static("true"),
                );
            }
            let addr = addr.to_string();
            async move {
                let resp = rpc
                    .unary(&addr, rpc.config.request_timeout, |mut s| async move {
                        s.update_offset(req).await
                    })
                    .await?;
                check(&resp.status)
            }
        })
        .await
    }

    /// Reads up to `max` messages of `queue` from `offset`, waiting up to the long-polling
    /// timeout when there is nothing new. An empty result with `next_offset == offset` means
    /// the end of the queue. An offset the broker's retention already deleted gives an empty
    /// result whose `next_offset` is the queue's first retained offset (RocketMQ's
    /// OFFSET_TOO_SMALL correction), so a pull loop goes on from there.
    pub async fn pull(
        &self,
        queue: &Queue,
        offset: i64,
        max: u32,
        filter: &Filter,
    ) -> Result<Pulled, ClientError> {
        let rpc = &self.base.rpc;
        let cfg = &rpc.config;
        let msg = pb::PullMessageRequest {
            group: rpc.resource(self.base.group().unwrap_or_default()),
            message_queue: Some(queue.to_pb(rpc)),
            offset,
            batch_size: max.clamp(1, 1024) as i32,
            filter_expression: Some(filter.to_pb()),
            long_polling_timeout: Some(v2util::to_pb_duration(cfg.long_polling_timeout)),
        };
        let timeout = cfg.long_polling_timeout + cfg.request_timeout;
        let broker = queue.broker.clone();
        self.on_queue(queue, |addr| {
            let req = rpc.request(msg.clone(), Some(timeout));
            let addr = addr.to_string();
            let broker = broker.clone();
            async move {
                let call = async {
                    let mut stub = rpc.stub(&addr)?;
                    let mut stream = stub
                        .pull_message(req)
                        .await
                        .map_err(|s| Failure::from_grpc(&s))?
                        .into_inner();
                    let (mut status, mut msgs, mut next) = (None, Vec::new(), None);
                    while let Some(r) =
                        stream.message().await.map_err(|s| Failure::from_grpc(&s))?
                    {
                        match r.content {
                            Some(Content::Status(s)) => status = Some(s),
                            Some(Content::Message(m)) => msgs.push(m),
                            Some(Content::NextOffset(n)) => next = Some(n),
                            None => {}
                        }
                    }
                    Ok::<_, Failure>((status, msgs, next))
                };
                let (status, msgs, next) =
                    tokio::time::timeout(timeout, call).await.map_err(|_| {
                        Failure::Ambiguous(format!("no answer from {addr} within {timeout:?}"))
                    })??;
                let code = status.as_ref().map(|s| s.code);
                if code == Some(pb::Code::IllegalOffset as i32)
                    && let Some(start) = next.filter(|n| *n > offset)
                {
                    return Ok(Pulled {
                        messages: Vec::new(),
                        next_offset: start,
                    });
                }
                if code != Some(pb::Code::MessageNotFound as i32) {
                    check(&status)?;
                }
                let mut out = Vec::with_capacity(msgs.len());
                for m in msgs {
                    match ReceivedMessage::from_pb(m, &broker, &addr) {
                        Ok(m) => out.push(m),
                        Err(e) => {
                            return Err(Failure::Refused {
                                code: pb::Code::MessageCorrupted as i32,
                                message: e.to_string(),
                            });
                        }
                    }
                }
                Ok(Pulled {
                    messages: out,
                    next_offset: next.unwrap_or(offset),
                })
            }
        })
        .await
    }

    /// Runs an idempotent operation on `queue`'s members in turn until one answers.
    async fn on_queue<T, F, Fut>(&self, queue: &Queue, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut(&str) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        self.base.check_open()?;
        let cfg = &self.base.rpc.config;
        let mut last = Failure::Retryable("not tried".into());
        let mut maybe_done = false;
        for attempt in 1..=cfg.max_attempts {
            tokio::time::sleep(cfg.backoff(attempt)).await;
            let addr = &queue.addrs[(attempt as usize - 1) % queue.addrs.len()];
            match op(addr).await {
                Ok(v) => return Ok(v),
                Err(f @ Failure::Refused { .. }) => return Err(f.into_error(attempt)),
                Err(f) => {
                    maybe_done |= matches!(f, Failure::Ambiguous(_));
                    last = f;
                }
            }
        }
        Err(last.given_up(maybe_done).into_error(cfg.max_attempts))
    }

    /// Stops background work and sends NotifyClientTermination to every endpoint used.
    pub async fn shutdown(self) {
        self.base.shutdown().await;
    }
}

impl Drop for PullConsumer {
    fn drop(&mut self) {
        self.base.abort_background();
    }
}
