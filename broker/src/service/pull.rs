//! Offset-based consumption (`PULL_CONSUMER`): PullMessage, GetOffset, UpdateOffset,
//! QueryOffset. A pull reads a queue from an offset the client chooses (seek by offset or by
//! store time = backtracking); committed offsets are replicated and only move forward unless
//! the client asks for a reset (`x-raftmq-offset-reset: true`).
//!
//! Every read runs on the group's leader after a ReadIndex round, so it never misses an
//! acknowledged send or commit; a follower forwards it ([`crate::forward`], the same one-hop,
//! authenticated path that sends, receives and acks take) and answers with what the leader
//! said. A commit is a replicated command, submitted like any other.

use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::pull_message_response::Content;
use tonic::Request;

use super::client_id;
use super::convert::DeliveryStamp;
use super::convert::pb_duration;
use super::convert::to_pb_message;
use super::grpc_timeout;
use super::receive::long_poll_wait;
use super::status::from_error;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::command::Command;
use crate::command::CommitOffset;
use crate::core::BrokerCore;
use crate::forward::wire::OffsetAt;
use crate::forward::wire::Read;
use crate::forward::wire::ReadAnswer;
use crate::model::QueueId;
use crate::model::QueueOffset;

/// Lets UpdateOffset move a group's offset backwards (a seek the client means).
pub const RESET: &str = "x-raftmq-offset-reset";
const MAX_PULL_BATCH: i32 = 1024;

/// The queue a request names: (topic, Raft group, queue id).
async fn resolve(
    core: &BrokerCore,
    mq: Option<&pb::MessageQueue>,
) -> Result<(String, u64, u32), pb::Status> {
    let mq = mq.ok_or_else(|| status(Code::BadRequest, "message queue is required"))?;
    let topic = validate::topic(mq.topic.as_ref())?;
    let g = validate::raft_group(core, mq)?;
    let configs = core
        .ensure_topic(&topic)
        .await
        .map_err(|e| from_error(&e))?;
    let Some((_, cfg)) = configs.iter().find(|(id, _)| *id == g) else {
        return Err(status(
            Code::TopicNotFound,
            format!("topic {topic} does not exist"),
        ));
    };
    if mq.id < 0 || mq.id as u32 >= cfg.queues {
        return Err(status(
            Code::BadRequest,
            format!(
                "queue {} does not exist (the topic has {} per broker)",
                mq.id, cfg.queues
            ),
        ));
    }
    Ok((topic, g, mq.id as u32))
}

fn pull_reply(
    s: pb::Status,
    msgs: Vec<pb::Message>,
    next: Option<i64>,
) -> Vec<pb::PullMessageResponse> {
    let mut out = vec![pb::PullMessageResponse {
        content: Some(Content::Status(s)),
    }];
    out.extend(msgs.into_iter().map(|m| pb::PullMessageResponse {
        content: Some(Content::Message(m)),
    }));
    if let Some(n) = next {
        out.push(pb::PullMessageResponse {
            content: Some(Content::NextOffset(n)),
        });
    }
    out
}

/// A pull reply with only a status.
fn pull_failed(s: pb::Status) -> Vec<pb::PullMessageResponse> {
    pull_reply(s, vec![], None)
}

pub async fn pull_message(
    core: &BrokerCore,
    req: Request<pb::PullMessageRequest>,
) -> Vec<pb::PullMessageResponse> {
    let started = tokio::time::Instant::now();
    if let Err(s) = client_id(&req) {
        return pull_failed(s);
    }
    let Some(_poll) = core.long_poll_permit() else {
        return pull_failed(status(
            Code::TooManyRequests,
            format!(
                "this node holds {} long polls already; retry later",
                core.settings.limits.max_long_polls
            ),
        ));
    };
    let rpc_deadline = grpc_timeout(&req);
    let r = req.get_ref();
    if let Err(s) = validate::group(r.group.as_ref()) {
        return pull_failed(s);
    }
    let (topic, g, queue) = match resolve(core, r.message_queue.as_ref()).await {
        Ok(x) => x,
        Err(s) => return pull_failed(s),
    };
    if r.offset < 0 {
        return pull_failed(status(Code::IllegalOffset, "offset must not be negative"));
    }
    let batch = match pull_batch(r.batch_size) {
        Ok(b) => b,
        Err(s) => return pull_failed(s),
    };
    let filter = match validate::filter(r.filter_expression.as_ref(), &core.settings.limits) {
        Ok(f) => f,
        Err(s) => return pull_failed(s),
    };
    let wait = long_poll_wait(
        r.long_polling_timeout.as_ref().map(pb_duration),
        rpc_deadline,
    );
    let offset = r.offset as u64;
    let wait_ms = wait.saturating_sub(started.elapsed()).as_millis() as u64;
    let max_bytes = core.settings.limits.max_reply_bytes as u64;
    let read = match filter.sql {
        Some(sql) => Read::PullSql {
            topic: topic.clone(),
            queue,
            offset,
            batch: batch as u32,
            sql,
            wait_ms,
            max_bytes,
        },
        None => Read::Pull {
            topic: topic.clone(),
            queue,
            offset,
            batch: batch as u32,
            filter: filter.tags,
            wait_ms,
            max_bytes,
        },
    };
    let answer = core.leader_read(g, read).await;
    pulled(core, answer, &topic, queue, offset)
}

/// The batch size a pull asks for (0: the default of 32).
fn pull_batch(b: i32) -> Result<usize, pb::Status> {
    Ok(match b {
        0 => 32,
        b if (1..=MAX_PULL_BATCH).contains(&b) => b,
        _ => {
            return Err(status(
                Code::BadRequest,
                format!("batch size must be 1..={MAX_PULL_BATCH}"),
            ));
        }
    } as usize)
}

/// The reply to a pull of `topic` queue `queue` from `offset`, given what the leader read.
fn pulled(
    core: &BrokerCore,
    answer: crate::error::Result<ReadAnswer>,
    topic: &str,
    queue: u32,
    offset: u64,
) -> Vec<pb::PullMessageResponse> {
    let host = core
        .peers()
        .get(&core.node_id())
        .map_or(String::new(), |p| p.client.clone());
    match answer {
        Err(e) => pull_failed(from_error(&e)),
        Ok(ReadAnswer::PastEnd { end }) => pull_reply(
            status(
                Code::IllegalOffset,
                format!("offset {offset} is past the end of the queue ({end})"),
            ),
            vec![],
            Some(end as i64),
        ),
        // RocketMQ's OFFSET_TOO_SMALL: the consumer moves to the first retained offset.
        Ok(ReadAnswer::BeforeStart { start }) => pull_reply(
            status(
                Code::IllegalOffset,
                format!("offset {offset} was deleted by retention; the queue starts at {start}"),
            ),
            vec![],
            Some(start as i64),
        ),
        Ok(ReadAnswer::Pulled {
            end,
            next,
            messages,
        }) if messages.is_empty() && next == offset => pull_reply(
            status(
                Code::MessageNotFound,
                format!("no message at or after offset {offset} (end {end})"),
            ),
            vec![],
            Some(offset as i64),
        ),
        Ok(ReadAnswer::Pulled { next, messages, .. }) => {
            let msgs = messages
                .into_iter()
                .map(|(off, e, m)| {
                    to_pb_message(
                        m,
                        DeliveryStamp {
                            topic,
                            queue,
                            offset: off,
                            receipt_handle: String::new(),
                            attempt: 1,
                            invisible: Duration::ZERO,
                            store_ms: e.store_ms,
                            store_host: &host,
                        },
                    )
                })
                .collect();
            pull_reply(ok(), msgs, Some(next as i64))
        }
        Ok(other) => pull_failed(status(
            Code::InternalError,
            format!("a pull answered {other:?}"),
        )),
    }
}

pub async fn get_offset(
    core: &BrokerCore,
    req: Request<pb::GetOffsetRequest>,
) -> pb::GetOffsetResponse {
    let reply = |s: pb::Status, offset: i64| pb::GetOffsetResponse {
        status: Some(s),
        offset,
    };
    if let Err(s) = client_id(&req) {
        return reply(s, 0);
    }
    let r = req.get_ref();
    let group = match validate::group(r.group.as_ref()) {
        Ok(g) => g,
        Err(s) => return reply(s, 0),
    };
    let (topic, g, queue) = match resolve(core, r.message_queue.as_ref()).await {
        Ok(x) => x,
        Err(s) => return reply(s, 0),
    };
    let read = Read::GetOffset {
        group: group.clone(),
        topic: topic.clone(),
        queue,
    };
    match core.leader_read(g, read).await {
        Ok(ReadAnswer::Offset(Some(o))) => reply(ok(), o as i64),
        // Only pull consumers ask this; the official Rust SDK (which panics on 40404)
        // never does.
        Ok(ReadAnswer::Offset(None)) => reply(
            status(
                Code::OffsetNotFound,
                format!("group {group} has committed no offset in {topic} queue {queue}"),
            ),
            0,
        ),
        Ok(other) => reply(
            status(Code::InternalError, format!("GetOffset answered {other:?}")),
            0,
        ),
        Err(e) => reply(from_error(&e), 0),
    }
}

pub async fn query_offset(
    core: &BrokerCore,
    req: Request<pb::QueryOffsetRequest>,
) -> pb::QueryOffsetResponse {
    let reply = |s: pb::Status, offset: i64| pb::QueryOffsetResponse {
        status: Some(s),
        offset,
    };
    if let Err(s) = client_id(&req) {
        return reply(s, 0);
    }
    let r = req.get_ref();
    let (topic, g, queue) = match resolve(core, r.message_queue.as_ref()).await {
        Ok(x) => x,
        Err(s) => return reply(s, 0),
    };
    let policy = pb::QueryOffsetPolicy::try_from(r.query_offset_policy);
    let at_ms = match (policy, r.timestamp.as_ref()) {
        (Ok(pb::QueryOffsetPolicy::Timestamp), Some(t)) => Some(raftmq_proto::v2util::ts_to_ms(t)),
        (Ok(pb::QueryOffsetPolicy::Timestamp), None) => {
            return reply(
                status(Code::BadRequest, "a TIMESTAMP query needs a timestamp"),
                0,
            );
        }
        (Ok(_), _) => None,
        (Err(_), _) => {
            return reply(
                status(
                    Code::BadRequest,
                    format!("unknown offset policy {}", r.query_offset_policy),
                ),
                0,
            );
        }
    };
    let at = match policy.unwrap_or(pb::QueryOffsetPolicy::Beginning) {
        pb::QueryOffsetPolicy::Beginning => OffsetAt::Beginning,
        pb::QueryOffsetPolicy::End => OffsetAt::End,
        pb::QueryOffsetPolicy::Timestamp => OffsetAt::Time(at_ms.unwrap_or(0)),
    };
    match core
        .leader_read(g, Read::QueryOffset { topic, queue, at })
        .await
    {
        Ok(ReadAnswer::Offset(Some(o))) => reply(ok(), o as i64),
        Ok(other) => reply(
            status(
                Code::InternalError,
                format!("QueryOffset answered {other:?}"),
            ),
            0,
        ),
        Err(e) => reply(from_error(&e), 0),
    }
}

pub async fn update_offset(
    core: &BrokerCore,
    req: Request<pb::UpdateOffsetRequest>,
) -> pb::UpdateOffsetResponse {
    let reply = |s: pb::Status| pb::UpdateOffsetResponse { status: Some(s) };
    if let Err(s) = client_id(&req) {
        return reply(s);
    }
    let reset = req
        .metadata()
        .get(RESET)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let r = req.get_ref();
    let group = match validate::group(r.group.as_ref()) {
        Ok(g) => g,
        Err(s) => return reply(s),
    };
    let (topic, g, queue) = match resolve(core, r.message_queue.as_ref()).await {
        Ok(x) => x,
        Err(s) => return reply(s),
    };
    if r.offset < 0 {
        return reply(status(Code::IllegalOffset, "offset must not be negative"));
    }
    // The end is read on the leader (linearizably), then the commit is proposed there; the
    // end only grows, so an offset within it stays within it.
    let end = match core
        .leader_read(
            g,
            Read::QueryOffset {
                topic: topic.clone(),
                queue,
                at: OffsetAt::End,
            },
        )
        .await
    {
        Ok(ReadAnswer::Offset(Some(e))) => e,
        Ok(other) => {
            return reply(status(
                Code::InternalError,
                format!("QueryOffset answered {other:?}"),
            ));
        }
        Err(e) => return reply(from_error(&e)),
    };
    if r.offset as u64 > end {
        return reply(status(
            Code::IllegalOffset,
            format!("offset {} is past the end of the queue ({end})", r.offset),
        ));
    }
    let cmd = Command::CommitOffset(CommitOffset {
        group,
        topic,
        queue: QueueId(queue),
        offset: QueueOffset(r.offset as u64),
        reset,
    });
    match core.submit(g, cmd).await {
        Ok(_) => reply(ok()),
        Err(e) => reply(from_error(&e)),
    }
}
