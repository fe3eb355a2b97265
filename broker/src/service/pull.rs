//! Offset-based consumption (`PULL_CONSUMER`): PullMessage, GetOffset, UpdateOffset,
//! QueryOffset. A pull reads a queue from an offset the client chooses (seek by offset or by
//! store time = backtracking); committed offsets are replicated and only move forward unless
//! the client asks for a reset (`x-raftmq-offset-reset: true`).
//!
//! Every one of these runs on the group's leader after a ReadIndex round, so a read never
//! misses an acknowledged send or commit. A follower passes the whole request to the leader's
//! v2 endpoint, one hop (marked `x-raftmq-hop`), and answers with what the leader said.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::messaging_service_client::MessagingServiceClient;
use raftmq_proto::v2::pull_message_response::Content;
use tonic::Request;
use tonic::transport::Channel;
use tonic::transport::Endpoint;

use super::client_id;
use super::convert::DeliveryStamp;
use super::convert::pb_duration;
use super::convert::to_pb_message;
use super::grpc_timeout;
use super::receive::DEADLINE_MARGIN;
use super::receive::DEFAULT_LONG_POLL;
use super::receive::MAX_LONG_POLL;
use super::receive::parse_filter;
use super::status::from_error;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::command::Command;
use crate::command::CommitOffset;
use crate::core::BrokerCore;
use crate::model::QueueId;
use crate::model::QueueOffset;

const HOP: &str = "x-raftmq-hop";
/// Lets UpdateOffset move a group's offset backwards (a seek the client means).
pub const RESET: &str = "x-raftmq-offset-reset";
const MAX_PULL_BATCH: i32 = 1024;
/// Entries examined per pull when a filter skips most of them (bounds the work of one call).
const MAX_SCAN: u64 = 64 * 1024;

/// Stubs for the other nodes' v2 endpoints, for passing requests to a leader.
#[derive(Default)]
pub struct Proxy {
    stubs: Mutex<BTreeMap<String, MessagingServiceClient<Channel>>>,
}

impl Proxy {
    fn stub(&self, addr: &str) -> Result<MessagingServiceClient<Channel>, pb::Status> {
        let mut stubs = self.stubs.lock().unwrap();
        if let Some(s) = stubs.get(addr) {
            return Ok(s.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| status(Code::InternalError, format!("bad peer address {addr}: {e}")))?
            .connect_timeout(Duration::from_millis(500));
        let s = MessagingServiceClient::new(ep.connect_lazy());
        stubs.insert(addr.to_string(), s.clone());
        Ok(s)
    }
}

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

enum Place {
    Here,
    Leader(String),
}

/// Where the request must run: here if this node leads `g`, else at the leader (once).
async fn place<T>(core: &BrokerCore, g: u64, req: &Request<T>) -> Result<Place, pb::Status> {
    match core.leader_client_addr(g).await {
        Ok(None) => Ok(Place::Here),
        Ok(Some(_)) if req.metadata().get(HOP).is_some() => Err(status(
            Code::HaNotAvailable,
            "leadership moved while the request was passed on; retry",
        )),
        Ok(Some(addr)) => Ok(Place::Leader(addr)),
        Err(e) => Err(from_error(&e)),
    }
}

/// `msg` with the original request's identity, marked as passed on once.
fn onward<T, U>(orig: &Request<T>, msg: U, timeout: Duration) -> Request<U> {
    let mut r = Request::new(msg);
    for key in ["x-mq-client-id", "x-mq-namespace", RESET] {
        if let Some(v) = orig.metadata().get(key) {
            r.metadata_mut().insert(key, v.clone());
        }
    }
    r.metadata_mut()
        .insert(HOP, tonic::metadata::MetadataValue::from_static("1"));
    r.set_timeout(timeout);
    r
}

/// Passes a unary request on to the leader at `addr` and returns its answer; `failed` says
/// what a failed call means for this RPC.
async fn pass_on<T, R, F, Fut>(
    proxy: &Proxy,
    addr: &str,
    req: &Request<T>,
    call: F,
    failed: fn(&str, tonic::Status) -> pb::Status,
) -> Result<R, pb::Status>
where
    T: Clone,
    F: FnOnce(MessagingServiceClient<Channel>, Request<T>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    let stub = proxy.stub(addr)?;
    let onward = onward(req, req.get_ref().clone(), Duration::from_secs(5));
    call(stub, onward)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| failed(addr, s))
}

/// A commit passed on to the leader failed: it may have happened (a repeat is harmless,
/// commits only move forward).
fn commit_passed_on_failed(addr: &str, s: tonic::Status) -> pb::Status {
    status(
        Code::ProxyTimeout,
        format!("the leader at {addr} did not answer: {s}"),
    )
}

/// A read passed on to the leader failed: nothing changed, so the client may simply retry.
fn passed_on_failed(addr: &str, s: tonic::Status) -> pb::Status {
    status(
        Code::HaNotAvailable,
        format!("the leader at {addr} did not answer: {s}"),
    )
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

pub async fn pull_message(
    core: &BrokerCore,
    proxy: &Proxy,
    req: Request<pb::PullMessageRequest>,
) -> Vec<pb::PullMessageResponse> {
    let started = tokio::time::Instant::now();
    if let Err(s) = client_id(&req) {
        return pull_reply(s, vec![], None);
    }
    let Some(_poll) = core.long_poll_permit() else {
        return pull_reply(
            status(
                Code::TooManyRequests,
                format!(
                    "this node holds {} long polls already; retry later",
                    core.settings.max_long_polls
                ),
            ),
            vec![],
            None,
        );
    };
    let rpc_deadline = grpc_timeout(&req);
    let r = req.get_ref();
    if let Err(s) = validate::group(r.group.as_ref()) {
        return pull_reply(s, vec![], None);
    }
    let (topic, g, queue) = match resolve(core, r.message_queue.as_ref()).await {
        Ok(x) => x,
        Err(s) => return pull_reply(s, vec![], None),
    };
    if r.offset < 0 {
        return pull_reply(
            status(Code::IllegalOffset, "offset must not be negative"),
            vec![],
            None,
        );
    }
    let batch = match r.batch_size {
        0 => 32,
        b if (1..=MAX_PULL_BATCH).contains(&b) => b,
        _ => {
            return pull_reply(
                status(
                    Code::BadRequest,
                    format!("batch size must be 1..={MAX_PULL_BATCH}"),
                ),
                vec![],
                None,
            );
        }
    } as usize;
    let filter = match parse_filter(r.filter_expression.as_ref(), &core.settings) {
        Ok(f) => f,
        Err(s) => return pull_reply(s, vec![], None),
    };
    let mut wait = r
        .long_polling_timeout
        .as_ref()
        .map(pb_duration)
        .unwrap_or(DEFAULT_LONG_POLL)
        .min(MAX_LONG_POLL);
    if let Some(d) = rpc_deadline {
        wait = wait.min(d.saturating_sub(DEADLINE_MARGIN));
    }
    match place(core, g, &req).await {
        Err(s) => return pull_reply(s, vec![], None),
        Ok(Place::Leader(addr)) => {
            let timeout = wait + Duration::from_secs(2);
            let call = async {
                let mut stub = proxy.stub(&addr)?;
                let mut stream = stub
                    .pull_message(onward(&req, req.get_ref().clone(), timeout))
                    .await
                    .map_err(|s| passed_on_failed(&addr, s))?
                    .into_inner();
                let mut out = Vec::new();
                while let Some(x) = stream
                    .message()
                    .await
                    .map_err(|s| passed_on_failed(&addr, s))?
                {
                    out.push(x);
                }
                Ok::<_, pb::Status>(out)
            };
            return match call.await {
                Ok(out) => out,
                Err(s) => pull_reply(s, vec![], None),
            };
        }
        Ok(Place::Here) => {}
    }
    let deadline = started + wait;
    let offset = r.offset as u64;
    let reply_budget = core.settings.max_reply_bytes as u64;
    let Ok(hosted) = core.group(g) else {
        return pull_reply(status(Code::InternalError, "group vanished"), vec![], None);
    };
    let replica = hosted.replica.clone();
    let host = core
        .peers()
        .get(&core.node_id())
        .map_or(String::new(), |p| p.client.clone());
    loop {
        let notify = replica.changed().clone();
        let mut changed = Box::pin(notify.notified());
        changed.as_mut().enable();
        let read = core
            .read_linearizable(g, |s| {
                let Some(cq) = s.queue(&topic, queue) else {
                    return Ok((0, Vec::new(), offset));
                };
                let end = cq.end();
                if offset > end {
                    return Err(end);
                }
                let mut found = Vec::new();
                let mut next = offset;
                let mut bytes = 0u64;
                while next < end && found.len() < batch && next - offset < MAX_SCAN {
                    if let Some(e) = cq.get(next)
                        && filter.matches(e.tag_hash)
                    {
                        // The reply stays under max_reply_bytes (at least one message).
                        bytes += u64::from(e.len);
                        if !found.is_empty() && bytes > reply_budget {
                            break;
                        }
                        found.push((next, *e));
                    }
                    next += 1;
                }
                Ok((end, found, next))
            })
            .await;
        let (end, found, next) = match read {
            Err(e) => return pull_reply(from_error(&e), vec![], None),
            Ok(Err(end)) => {
                return pull_reply(
                    status(
                        Code::IllegalOffset,
                        format!("offset {offset} is past the end of the queue ({end})"),
                    ),
                    vec![],
                    Some(end as i64),
                );
            }
            Ok(Ok(x)) => x,
        };
        if !found.is_empty() || next > offset {
            let mut msgs = Vec::with_capacity(found.len());
            for (off, e) in found {
                match replica.read_message(&e) {
                    Ok(m) => msgs.push(to_pb_message(
                        m,
                        DeliveryStamp {
                            topic: &topic,
                            queue,
                            offset: off,
                            receipt_handle: String::new(),
                            attempt: 1,
                            invisible: Duration::ZERO,
                            store_ms: e.store_ms,
                            store_host: &host,
                        },
                    )),
                    Err(err) => return pull_reply(from_error(&err), vec![], None),
                }
            }
            return pull_reply(ok(), msgs, Some(next as i64));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return pull_reply(
                status(
                    Code::MessageNotFound,
                    format!("no message at or after offset {offset} (end {end})"),
                ),
                vec![],
                Some(offset as i64),
            );
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(deadline - now) => {}
        }
    }
}

pub async fn get_offset(
    core: &BrokerCore,
    proxy: &Proxy,
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
    match place(core, g, &req).await {
        Err(s) => reply(s, 0),
        Ok(Place::Leader(addr)) => {
            let call =
                |mut c: MessagingServiceClient<Channel>, r| async move { c.get_offset(r).await };
            pass_on(proxy, &addr, &req, call, passed_on_failed)
                .await
                .unwrap_or_else(|s| reply(s, 0))
        }
        Ok(Place::Here) => match core
            .read_linearizable(g, |s| s.offsets.get(&group, &topic, queue))
            .await
        {
            Ok(Some(o)) => reply(ok(), o as i64),
            // Only pull consumers ask this; the official Rust SDK (which panics on 40404)
            // never does.
            Ok(None) => reply(
                status(
                    Code::OffsetNotFound,
                    format!("group {group} has committed no offset in {topic} queue {queue}"),
                ),
                0,
            ),
            Err(e) => reply(from_error(&e), 0),
        },
    }
}

pub async fn query_offset(
    core: &BrokerCore,
    proxy: &Proxy,
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
    let policy = policy.unwrap_or(pb::QueryOffsetPolicy::Beginning);
    match place(core, g, &req).await {
        Err(s) => reply(s, 0),
        Ok(Place::Leader(addr)) => {
            let call =
                |mut c: MessagingServiceClient<Channel>, r| async move { c.query_offset(r).await };
            pass_on(proxy, &addr, &req, call, passed_on_failed)
                .await
                .unwrap_or_else(|s| reply(s, 0))
        }
        Ok(Place::Here) => match core
            .read_linearizable(g, |s| {
                let cq = s.queue(&topic, queue);
                match policy {
                    pb::QueryOffsetPolicy::Beginning => 0,
                    pb::QueryOffsetPolicy::End => cq.map_or(0, |c| c.end()),
                    pb::QueryOffsetPolicy::Timestamp => {
                        cq.map_or(0, |c| c.offset_at_time(at_ms.unwrap_or(0)))
                    }
                }
            })
            .await
        {
            Ok(o) => reply(ok(), o as i64),
            Err(e) => reply(from_error(&e), 0),
        },
    }
}

pub async fn update_offset(
    core: &BrokerCore,
    proxy: &Proxy,
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
    match place(core, g, &req).await {
        Err(s) => reply(s),
        Ok(Place::Leader(addr)) => {
            let call =
                |mut c: MessagingServiceClient<Channel>, r| async move { c.update_offset(r).await };
            pass_on(proxy, &addr, &req, call, commit_passed_on_failed)
                .await
                .unwrap_or_else(reply)
        }
        Ok(Place::Here) => {
            let end = match core
                .read_linearizable(g, |s| s.queue(&topic, queue).map_or(0, |c| c.end()))
                .await
            {
                Ok(e) => e,
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
            match core.submit_local(g, cmd).await {
                Ok(_) => reply(ok()),
                Err(e) => reply(from_error(&e)),
            }
        }
    }
}
