//! ReceiveMessage (long polling), AckMessage, ChangeInvisibleDuration.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tokio::sync::Notify;
use tonic::Request;

use super::client_id;
use super::convert::DeliveryStamp;
use super::convert::ms_to_ts;
use super::convert::pb_duration;
use super::convert::to_pb_message;
use super::grpc_timeout;
use super::served_receipt;
use super::status::combine;
use super::status::from_error;
use super::status::from_reject;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::batcher::now_ms;
use crate::command::Ack;
use crate::command::ChangeInvisible;
use crate::command::Command;
use crate::command::Pop;
use crate::core::BrokerCore;
use crate::model::QueueId;
use crate::receipt;
use crate::state::Outcome;

/// Long polls default to this when the client names none.
pub(super) const DEFAULT_LONG_POLL: Duration = Duration::from_secs(20);
/// And never exceed this.
pub(super) const MAX_LONG_POLL: Duration = Duration::from_secs(60);
/// Margin kept before the client's gRPC deadline, so the answer arrives in time.
pub(super) const DEADLINE_MARGIN: Duration = Duration::from_millis(200);
const MAX_BATCH: i32 = 1024;

fn reply_status(s: pb::Status) -> Vec<pb::ReceiveMessageResponse> {
    vec![
        pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::Status(s)),
        },
        pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::DeliveryTimestamp(
                ms_to_ts(now_ms()),
            )),
        },
    ]
}

pub async fn receive_message(
    core: &BrokerCore,
    req: Request<pb::ReceiveMessageRequest>,
) -> Vec<pb::ReceiveMessageResponse> {
    let started = tokio::time::Instant::now();
    let rpc_deadline = grpc_timeout(&req);
    let client = match client_id(&req) {
        Ok(c) => c,
        Err(s) => return reply_status(s),
    };
    let Some(_poll) = core.long_poll_permit() else {
        return reply_status(status(
            Code::TooManyRequests,
            format!(
                "this node holds {} receives already; retry later",
                core.settings.limits.max_long_polls
            ),
        ));
    };
    core.clients().touch(&client);
    let req = req.into_inner();
    let receive = match prepare(core, &req, started, rpc_deadline).await {
        Ok(r) => r,
        Err(s) => return reply_status(s),
    };
    long_poll(core, &req, &client, &receive, started).await
}

/// A checked receive: the command to propose, the groups to take it from, and until when to
/// wait for a message.
struct Receive {
    pop: Pop,
    /// Raft groups to look in, in order.
    candidates: Vec<u64>,
    invisible: Duration,
    deadline: tokio::time::Instant,
}

/// Validates a receive and resolves where it reads (creating its topic and group if need be).
async fn prepare(
    core: &BrokerCore,
    req: &pb::ReceiveMessageRequest,
    started: tokio::time::Instant,
    rpc_deadline: Option<Duration>,
) -> Result<Receive, pb::Status> {
    let group = validate::group(req.group.as_ref())?;
    let Some(mq) = req.message_queue.as_ref() else {
        return Err(status(Code::BadRequest, "message queue is required"));
    };
    let topic = validate::topic(mq.topic.as_ref())?;
    if req.batch_size <= 0 || req.batch_size > MAX_BATCH {
        return Err(status(
            Code::BadRequest,
            format!("batch size must be 1..={MAX_BATCH}"),
        ));
    }
    let invisible = invisible_duration(core, req)?;
    let filter = validate::filter(req.filter_expression.as_ref(), &core.settings.limits)?;
    let wait = long_poll_wait(
        req.long_polling_timeout.as_ref().map(pb_duration),
        rpc_deadline,
    );
    let deadline = started + wait;
    let (queue, candidates) = sources(core, mq, &topic, &group).await?;
    let pop = Pop {
        group,
        topic,
        queue: queue.map(QueueId),
        max: req.batch_size as u32,
        invisible_ms: invisible.as_millis() as u64,
        filter: filter.tags,
        max_bytes: core.settings.limits.max_reply_bytes as u64,
        order: Default::default(),
        sql: filter.sql,
        verdicts: None,
    };
    Ok(Receive {
        pop,
        candidates,
        invisible,
        deadline,
    })
}

/// How long deliveries stay invisible: the client's duration within the configured bounds, or
/// the renewal period when the broker renews them (`auto_renew`).
fn invisible_duration(
    core: &BrokerCore,
    req: &pb::ReceiveMessageRequest,
) -> Result<Duration, pb::Status> {
    match (
        req.auto_renew,
        req.invisible_duration.as_ref().map(pb_duration),
    ) {
        (true, None) => Ok(core.settings.renew_invisible),
        (_, Some(d)) if d >= core.settings.min_invisible && d <= core.settings.max_invisible => {
            Ok(d)
        }
        (_, Some(d)) => Err(status(
            Code::IllegalInvisibleTime,
            format!(
                "invisible duration {d:?} is outside {:?}..={:?}",
                core.settings.min_invisible, core.settings.max_invisible
            ),
        )),
        (false, None) => Err(status(
            Code::IllegalInvisibleTime,
            "invisible duration is required",
        )),
    }
}

/// How long a long poll may wait: what the client asked (or the default), at most
/// [`MAX_LONG_POLL`], and ending [`DEADLINE_MARGIN`] before the gRPC deadline.
pub(super) fn long_poll_wait(asked: Option<Duration>, rpc_deadline: Option<Duration>) -> Duration {
    let mut wait = asked.unwrap_or(DEFAULT_LONG_POLL).min(MAX_LONG_POLL);
    if let Some(d) = rpc_deadline {
        wait = wait.min(d.saturating_sub(DEADLINE_MARGIN));
    }
    wait
}

/// The queue a receive reads (`None`: any) and the Raft groups it may take from, named group
/// first.
async fn sources(
    core: &BrokerCore,
    mq: &pb::MessageQueue,
    topic: &str,
    group: &str,
) -> Result<(Option<u32>, Vec<u64>), pb::Status> {
    let group_id = validate::raft_group(core, mq)?;
    let topic_groups: Vec<u64> = match core.ensure_topic(topic).await {
        Ok(c) if c.iter().any(|(g, _)| *g == group_id) => c.into_iter().map(|(g, _)| g).collect(),
        Ok(_) => {
            return Err(status(
                Code::TopicNotFound,
                format!("topic {topic} does not exist"),
            ));
        }
        Err(e) => return Err(from_error(&e)),
    };
    let gcfg = core.ensure_group(group).await.map_err(|e| from_error(&e))?;
    // Only FIFO groups read a named queue; others take from any queue (as the proxy does),
    // and, when the named group has nothing, from any other group of the topic on this node:
    // a simple consumer cycles through every queue of its route, and waiting out a long poll
    // on a drained group while another holds messages would make it crawl. The receipt names
    // the group a message came from, and any node forwards acks.
    let queue = (gcfg.fifo && mq.id >= 0).then_some(mq.id as u32);
    let candidates: Vec<u64> = if gcfg.fifo {
        vec![group_id]
    } else {
        std::iter::once(group_id)
            .chain(topic_groups.into_iter().filter(|g| *g != group_id))
            .collect()
    };
    Ok((queue, candidates))
}

/// Waits until a candidate group has a visible message and takes it, or until the deadline.
async fn long_poll(
    core: &BrokerCore,
    req: &pb::ReceiveMessageRequest,
    client: &str,
    r: &Receive,
    started: tokio::time::Instant,
) -> Vec<pb::ReceiveMessageResponse> {
    loop {
        // Register for wake-ups before looking, so an apply in between is not missed.
        let notifies = match change_notifies(core, &r.candidates) {
            Ok(n) => n,
            Err(s) => return reply_status(s),
        };
        let mut waits: Vec<_> = notifies.iter().map(|n| Box::pin(n.notified())).collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let (chosen, expiry) = match look(core, r) {
            Ok(x) => x,
            Err(s) => return reply_status(s),
        };
        if let Some(g) = chosen {
            match take(core, req, client, r, g, started).await {
                Some(reply) => return reply,
                None => continue, // everything visible was filtered out or dead-lettered
            }
        }
        let now_i = tokio::time::Instant::now();
        if now_i >= r.deadline {
            return reply_status(status(Code::MessageNotFound, "no new message"));
        }
        let mut sleep = (r.deadline - now_i).min(Duration::from_secs(1));
        if let Some(e) = expiry {
            sleep = sleep.min(Duration::from_millis(e.max(1)));
        }
        tokio::select! {
            biased;
            _ = futures::future::select_all(waits) => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Each candidate group's change notification.
fn change_notifies(core: &BrokerCore, candidates: &[u64]) -> Result<Vec<Arc<Notify>>, pb::Status> {
    let mut notifies = Vec::new();
    for g in candidates {
        match core.group(*g) {
            Ok(h) => notifies.push(h.replica.changed().clone()),
            Err(e) => return Err(from_error(&e)),
        }
    }
    Ok(notifies)
}

/// The first candidate group with a visible message, if any, and the milliseconds until the
/// nearest invisibility deadline, by each group's cluster clock.
fn look(core: &BrokerCore, r: &Receive) -> Result<(Option<u64>, Option<u64>), pb::Status> {
    let (group, topic, queue) = (&r.pop.group, &r.pop.topic, r.pop.queue.map(|q| q.0));
    let mut chosen = None;
    let mut expiry: Option<u64> = None;
    for g in &r.candidates {
        let clock = match core.group(*g) {
            Ok(h) => h.replica.clock().now(),
            Err(e) => return Err(from_error(&e)),
        };
        let (visible, e) = match core.read(*g, |s| {
            let now = clock.max(s.clock_ms);
            (
                s.has_visible(group, topic, queue, now),
                s.next_expiry(group, topic).map(|e| e.saturating_sub(now)),
            )
        }) {
            Ok(v) => v,
            Err(e) => return Err(from_error(&e)),
        };
        expiry = match (expiry, e) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if visible {
            chosen = Some(*g);
            break;
        }
    }
    Ok((chosen, expiry))
}

/// Proposes the receive in group `g`: the reply to send, or `None` when it took nothing.
async fn take(
    core: &BrokerCore,
    req: &pb::ReceiveMessageRequest,
    client: &str,
    r: &Receive,
    g: u64,
    started: tokio::time::Instant,
) -> Option<Vec<pb::ReceiveMessageResponse>> {
    let (group, topic) = (&r.pop.group, &r.pop.topic);
    let t = tokio::time::Instant::now();
    let popped = core.pop(g, r.pop.clone()).await;
    tracing::debug!(
        group = g,
        %topic,
        consumer = %group,
        waited_ms = started.elapsed().as_millis() as u64,
        pop_ms = t.elapsed().as_millis() as u64,
        result = ?popped.as_ref().map(|v| v.len()),
        "receive pop"
    );
    match popped {
        Ok(got) if !got.is_empty() => {
            Some(deliveries(core, req, client, g, group, r.invisible, got))
        }
        Ok(_) => None,
        Err(crate::error::BrokerError::Rejected(x)) => Some(reply_status(from_reject(&x))),
        Err(e) => Some(reply_status(from_error(&e))),
    }
}

/// The stream for delivered messages: `status OK`, the messages, then the server's time.
fn deliveries(
    core: &BrokerCore,
    req: &pb::ReceiveMessageRequest,
    client: &str,
    group_id: u64,
    group: &str,
    invisible: Duration,
    got: crate::forward::wire::Popped,
) -> Vec<pb::ReceiveMessageResponse> {
    let mut out = vec![pb::ReceiveMessageResponse {
        content: Some(pb::receive_message_response::Content::Status(ok())),
    }];
    let host = core
        .peers()
        .get(&core.node_id())
        .map_or(String::new(), |p| p.client.clone());
    for (d, m) in got {
        if req.auto_renew {
            core.track_renewal(client, group_id, group, &d);
        }
        let msg = to_pb_message(
            m,
            DeliveryStamp {
                topic: &d.topic,
                queue: d.receipt.queue.0,
                offset: d.receipt.offset.0,
                receipt_handle: receipt::encode(group_id, &d.receipt),
                attempt: d.attempt,
                invisible,
                store_ms: d.entry.store_ms,
                store_host: &host,
            },
        );
        out.push(pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::Message(msg)),
        });
    }
    out.push(pb::ReceiveMessageResponse {
        content: Some(pb::receive_message_response::Content::DeliveryTimestamp(
            ms_to_ts(now_ms()),
        )),
    });
    out
}

pub async fn ack_message(
    core: &BrokerCore,
    req: Request<pb::AckMessageRequest>,
) -> pb::AckMessageResponse {
    let id_check = client_id(&req);
    let wait = grpc_timeout(&req);
    let req = req.into_inner();
    let fail = |s: pb::Status| pb::AckMessageResponse {
        entries: req
            .entries
            .iter()
            .map(|e| pb::AckMessageResultEntry {
                message_id: e.message_id.clone(),
                receipt_handle: e.receipt_handle.clone(),
                status: Some(s.clone()),
            })
            .collect(),
        status: Some(s),
    };
    match id_check {
        Ok(c) => core.clients().touch(&c),
        Err(s) => return fail(s),
    }
    let (group, topic) = match (
        validate::group(req.group.as_ref()),
        validate::topic(req.topic.as_ref()),
    ) {
        (Ok(g), Ok(t)) => (g, t),
        (Err(s), _) | (_, Err(s)) => return fail(s),
    };
    if req.entries.is_empty() {
        return fail(status(Code::BadRequest, "no entries"));
    }
    let acks = req.entries.iter().map(|e| async {
        let (g, r) = match served_receipt(core, &e.receipt_handle) {
            Ok(x) => x,
            Err(s) => return s,
        };
        let cmd = Command::Ack(Ack {
            group: group.clone(),
            topic: topic.clone(),
            receipt: r,
        });
        match core.submit_within(g, cmd, wait).await {
            Ok(Outcome::Acked) => {
                core.untrack_renewal(g, &group, &topic, &r);
                ok()
            }
            Ok(Outcome::Rejected(x)) => from_reject(&x),
            Ok(other) => status(Code::InternalError, format!("unexpected outcome {other:?}")),
            Err(e) => from_error(&e),
        }
    });
    let statuses = join_all(acks).await;
    let entries: Vec<_> = req
        .entries
        .iter()
        .zip(statuses)
        .map(|(e, s)| pb::AckMessageResultEntry {
            message_id: e.message_id.clone(),
            receipt_handle: e.receipt_handle.clone(),
            status: Some(s),
        })
        .collect();
    pb::AckMessageResponse {
        status: Some(combine(entries.iter().filter_map(|e| e.status.as_ref()))),
        entries,
    }
}

/// Metadata header of a ChangeInvisibleDuration that reports a failed delivery (the native
/// client's nack): the group's retry policy decides how long the message stays invisible,
/// and the request's duration is ignored. Official clients never send it.
pub const NACK: &str = "x-raftmq-nack";

pub async fn change_invisible_duration(
    core: &BrokerCore,
    req: Request<pb::ChangeInvisibleDurationRequest>,
) -> pb::ChangeInvisibleDurationResponse {
    let id_check = client_id(&req);
    let nack = req
        .metadata()
        .get(NACK)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let req = req.into_inner();
    let fail = |s: pb::Status| pb::ChangeInvisibleDurationResponse {
        status: Some(s),
        receipt_handle: req.receipt_handle.clone(),
    };
    match id_check {
        Ok(c) => core.clients().touch(&c),
        Err(s) => return fail(s),
    }
    let (group, topic) = match (
        validate::group(req.group.as_ref()),
        validate::topic(req.topic.as_ref()),
    ) {
        (Ok(g), Ok(t)) => (g, t),
        (Err(s), _) | (_, Err(s)) => return fail(s),
    };
    let invisible = req
        .invisible_duration
        .as_ref()
        .map(pb_duration)
        .unwrap_or_default();
    if invisible > core.settings.max_invisible {
        return fail(status(
            Code::IllegalInvisibleTime,
            format!("invisible duration {invisible:?} is too long"),
        ));
    }
    let (g, r) = match served_receipt(core, &req.receipt_handle) {
        Ok(x) => x,
        Err(s) => return fail(s),
    };
    let cmd = if nack {
        Command::Nack(Ack {
            group: group.clone(),
            topic: topic.clone(),
            receipt: r,
        })
    } else {
        Command::ChangeInvisible(ChangeInvisible {
            group: group.clone(),
            topic: topic.clone(),
            receipt: r,
            invisible_ms: invisible.as_millis() as u64,
        })
    };
    match core.submit(g, cmd).await {
        Ok(Outcome::Changed { receipt: nr, .. }) => {
            // The client now manages this delivery's visibility itself.
            core.untrack_renewal(g, &group, &topic, &r);
            pb::ChangeInvisibleDurationResponse {
                status: Some(ok()),
                receipt_handle: receipt::encode(g, &nr),
            }
        }
        Ok(Outcome::Rejected(x)) => fail(from_reject(&x)),
        Ok(other) => fail(status(
            Code::InternalError,
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => fail(from_error(&e)),
    }
}
