//! SendMessage: validate, route each message to a queue, group-commit them, answer one entry
//! per message.
//!
//! The broker picks each message's queue (as the Apache proxy does), and v2's result entry has
//! no field for it; so the answer also names, in the [`STORED_IN`] response header, the broker
//! (Raft group) and queue of every stored message. Official clients ignore the header; the
//! native client puts it in its receipts, and the real-process suite tells what retention
//! deleted by it.

use futures::future::join_all;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tonic::Request;
use tonic::Response;

use super::client_id;
use super::grpc_timeout;
use super::status::combine;
use super::status::from_error;
use super::status::from_reject;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::batcher::now_ms;
use crate::command::Command;
use crate::command::Half;
use crate::core::BrokerCore;
use crate::model::MessageKind;
use crate::model::QueueId;
use crate::model::StoredMessage;
use crate::model::TopicKind;
use crate::model::tag_hash;
use crate::state::Outcome;

/// The response header naming where each message went: one `<broker>/<queue id>` per result
/// entry, in order, separated by spaces (`-` for a message that was not stored).
pub const STORED_IN: &str = "x-raftmq-stored-in";

/// A stored message.
struct Stored {
    /// Its message id.
    id: String,
    /// Its queue offset (0 while scheduled or undecided).
    offset: u64,
    /// Raft group.
    group: u64,
    /// Queue.
    queue: u32,
    /// A scheduled message's recall handle (else empty).
    recall_handle: String,
    /// A half message's transaction id (else empty).
    transaction_id: String,
}

pub async fn send_message(
    core: &BrokerCore,
    req: Request<pb::SendMessageRequest>,
) -> Response<pb::SendMessageResponse> {
    let id_check = client_id(&req);
    let deadline = grpc_timeout(&req).map(|w| tokio::time::Instant::now() + w);
    let req = req.into_inner();
    let client = match id_check {
        Ok(c) => c,
        Err(s) => return Response::new(fail_all(&req, s)),
    };
    if let Err(s) = check_batch(core, &req) {
        return Response::new(fail_all(&req, s));
    }

    let now = now_ms();
    let mut checked = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        checked.push(validate::message(
            m,
            core.settings.limits.max_body_bytes,
            now,
            core.settings.limits.max_delay_secs.saturating_mul(1000),
        ));
    }
    // A producer that sends half messages has a transaction checker: check-backs go to it
    // first (`Clients::mark_transactional`).
    if checked
        .iter()
        .any(|c| c.as_ref().is_ok_and(|m| m.kind == MessageKind::Transaction))
    {
        core.clients().mark_transactional(&client);
    }
    let Some(topic) = checked
        .iter()
        .find_map(|c| c.as_ref().ok().map(|m| m.topic.clone()))
    else {
        return Response::new(all_invalid(&req, &checked));
    };
    let configs = match core.ensure_topic(&topic).await {
        Ok(c) if c.is_empty() => {
            return Response::new(fail_all(
                &req,
                status(Code::TopicNotFound, format!("topic {topic} does not exist")),
            ));
        }
        Ok(c) => c,
        Err(e) => return Response::new(fail_all(&req, from_error(&e))),
    };
    // Every (group, queue) of the topic on this node, in a fixed order.
    let slots: Vec<(u64, u32)> = configs
        .iter()
        .flat_map(|(g, c)| (0..c.queues).map(move |q| (*g, q)))
        .collect();
    let targets = Targets {
        topic: &topic,
        kind: configs[0].1.kind,
        slots: &slots,
        deadline,
    };
    let sends = checked
        .into_iter()
        .zip(&req.messages)
        .map(|(c, m)| send_one(core, &targets, c, check_after(core, m)));
    let results = join_all(sends).await;
    let places: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(st) => core
                .group(st.group)
                .map_or_else(|_| "-".to_string(), |h| format!("{}/{}", h.name, st.queue)),
            Err(_) => "-".to_string(),
        })
        .collect();
    let mut resp = Response::new(answer(&req, results));
    // Broker names are checked printable ASCII without spaces (config); a value that is not a
    // valid header anyway is left out rather than failing the send.
    if let Ok(v) = places.join(" ").parse() {
        resp.metadata_mut().insert(STORED_IN, v);
    }
    resp
}

/// Answers every message of the request with `s`.
fn fail_all(req: &pb::SendMessageRequest, s: pb::Status) -> pb::SendMessageResponse {
    let entries: Vec<_> = req
        .messages
        .iter()
        .map(|m| {
            entry(
                s.clone(),
                m.system_properties.as_ref().map_or("", |p| &p.message_id),
            )
        })
        .collect();
    pb::SendMessageResponse {
        status: Some(s),
        entries,
    }
}

/// Every message is invalid: answer each with its own reason.
fn all_invalid(
    req: &pb::SendMessageRequest,
    checked: &[Result<StoredMessage, pb::Status>],
) -> pb::SendMessageResponse {
    let entries: Vec<_> = checked
        .iter()
        .zip(&req.messages)
        .map(|(c, m)| {
            entry(
                c.clone().unwrap_err(),
                &m.system_properties
                    .as_ref()
                    .map_or(String::new(), |p| p.message_id.clone()),
            )
        })
        .collect();
    let top = combine(entries.iter().filter_map(|e| e.status.as_ref()));
    pb::SendMessageResponse {
        status: Some(top),
        entries,
    }
}

/// Where the messages of a batch may go.
struct Targets<'a> {
    /// The batch's topic (every valid message's).
    topic: &'a str,
    /// What the topic accepts.
    kind: TopicKind,
    /// Every (group, queue) of the topic on this node, in a fixed order.
    slots: &'a [(u64, u32)],
    /// Until when the client waits for the answer (its gRPC deadline), if it said.
    deadline: Option<tokio::time::Instant>,
}

/// Stores one message of the batch in the queue it routes to: its id and offset, or why
/// not (the reason its checks gave, if it failed them).
async fn send_one(
    core: &BrokerCore,
    t: &Targets<'_>,
    c: Result<StoredMessage, pb::Status>,
    check_after_ms: u64,
) -> Result<Stored, pb::Status> {
    let (topic, slots) = (t.topic, t.slots);
    let mut m = c?;
    if !t.kind.accepts(m.kind) {
        return Err(status(
            Code::MessagePropertyConflictWithType,
            format!("topic {topic} does not accept {:?} messages", m.kind),
        ));
    }
    // Clients' queue choices are not reliable (the Python client always says queue 0), so the
    // broker picks, as the Apache proxy does. Messages of one message group always go to one
    // queue, so the group keeps its order. Any other message goes to the Raft group its id
    // hashes to, wherever it was sent and whoever leads: a resend after an unknown outcome
    // meets its first copy in that group's deduplication window (`state::dedup`); within the
    // group, queues take turns. (It used to prefer groups led by the receiving node, saving a
    // forwarding hop in clusters of several groups, and a resend could land in another group.)
    let (g, q) = match &m.message_group {
        Some(mg) => slots[(tag_hash(Some(mg)) % slots.len() as u64) as usize],
        None => {
            let mut groups: Vec<u64> = slots.iter().map(|(g, _)| *g).collect();
            groups.dedup();
            let g = groups[(tag_hash(Some(&m.message_id)) % groups.len() as u64) as usize];
            let queues: Vec<u32> = slots
                .iter()
                .filter(|(h, _)| *h == g)
                .map(|(_, q)| *q)
                .collect();
            // A priority topic's queue q holds priority q, the last queue every priority
            // from its own up (a receive takes from the highest queue first).
            let turn = if t.kind == TopicKind::Priority {
                (m.kind.priority() as usize).min(queues.len() - 1)
            } else {
                (core.next_round_robin() % queues.len() as u64) as usize
            };
            (g, queues[turn])
        }
    };
    m.queue = QueueId(q);
    let id = m.message_id.clone();
    let wait = t
        .deadline
        .map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
    // A message with a delivery time waits in the group's timers (`state::timer`); a half
    // message for its transaction's decision (`state::txn`).
    let command = match m.kind {
        MessageKind::Delay => Command::Schedule(m),
        MessageKind::Transaction => Command::Half(Half {
            check_after_ms,
            message: m,
        }),
        _ => Command::Send(m),
    };
    // The queue comes from the outcome: a resend inside the deduplication window is answered
    // with where the first copy went, not the queue picked for this one.
    let stored = |offset: u64, queue: QueueId| Stored {
        id: id.clone(),
        offset,
        group: g,
        queue: queue.0,
        recall_handle: String::new(),
        transaction_id: String::new(),
    };
    match core.submit_within(g, command, wait).await {
        // Under the simulator, sometimes lose the answer of a stored send: the client
        // must treat it as unknown.
        Ok(Outcome::Sent { .. } | Outcome::Scheduled { .. } | Outcome::Half { .. }) if raft_store::buggify!() => {
            Err(status(
                Code::MasterPersistenceTimeout,
                "answer lost (simulated)",
            ))
        }
        Ok(Outcome::Sent { offset, queue }) => Ok(stored(offset.0, queue)),
        Ok(Outcome::Scheduled { key, queue }) => Ok(Stored {
            recall_handle: super::recall::handle(g, topic, &key, &id),
            ..stored(0, queue)
        }),
        Ok(Outcome::Half { key, queue }) => Ok(Stored {
            transaction_id: super::transaction::transaction_id(g, &key),
            ..stored(0, queue)
        }),
        Ok(Outcome::Rejected(r)) => Err(from_reject(&r)),
        Ok(other) => Err(status(
            Code::InternalError,
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err(from_error(&e)),
    }
}

/// When a half message's first check-back is due: after the producer's
/// `orphaned_transaction_recovery_duration` if it gave one (within a second and the log's
/// bound), else after `[transactions] check_after`.
fn check_after(core: &BrokerCore, m: &pb::Message) -> u64 {
    let asked = m
        .system_properties
        .as_ref()
        .and_then(|p| p.orphaned_transaction_recovery_duration.as_ref())
        .map(|d| {
            (d.seconds.max(0) as u64)
                .saturating_mul(1000)
                .saturating_add(d.nanos.max(0) as u64 / 1_000_000)
        });
    asked
        .unwrap_or(core.settings.transactions.check_after.as_millis() as u64)
        .clamp(1_000, crate::limits::MAX_TX_CHECK_MS)
}

/// One entry of the answer.
fn entry(s: pb::Status, id: &str) -> pb::SendResultEntry {
    pb::SendResultEntry {
        status: Some(s),
        message_id: id.to_string(),
        transaction_id: String::new(),
        offset: 0,
        recall_handle: String::new(),
    }
}

/// The checks on the batch as a whole: its size, and one topic for all its messages.
fn check_batch(core: &BrokerCore, req: &pb::SendMessageRequest) -> Result<(), pb::Status> {
    if req.messages.is_empty() {
        return Err(status(Code::BadRequest, "no messages"));
    }
    let batch_bytes: usize = req.messages.iter().map(|m| m.body.len()).sum();
    if req.messages.len() > core.settings.limits.max_batch_messages {
        return Err(status(
            Code::BadRequest,
            format!(
                "a batch of {} messages exceeds the limit of {}",
                req.messages.len(),
                core.settings.limits.max_batch_messages
            ),
        ));
    }
    if batch_bytes > core.settings.limits.max_batch_bytes {
        return Err(status(
            Code::MessageBodyTooLarge,
            format!(
                "a batch of {batch_bytes} body bytes exceeds the limit of {}",
                core.settings.limits.max_batch_bytes
            ),
        ));
    }
    // A batch must share its topic (and type), as the SDKs guarantee: namespace and name.
    let topics: std::collections::BTreeSet<_> = req
        .messages
        .iter()
        .map(|m| m.topic.as_ref().map(|t| (&t.resource_namespace, &t.name)))
        .collect();
    if topics.len() > 1 {
        return Err(status(
            Code::BadRequest,
            "all messages of a batch must have the same topic",
        ));
    }
    Ok(())
}

/// One entry per message, in order, and the combined status.
fn answer(
    req: &pb::SendMessageRequest,
    results: Vec<Result<Stored, pb::Status>>,
) -> pb::SendMessageResponse {
    let entries: Vec<pb::SendResultEntry> = results
        .into_iter()
        .zip(&req.messages)
        .map(|(r, m)| match r {
            Ok(st) => pb::SendResultEntry {
                offset: st.offset as i64,
                recall_handle: st.recall_handle,
                transaction_id: st.transaction_id,
                ..entry(ok(), &st.id)
            },
            Err(s) => entry(
                s,
                m.system_properties.as_ref().map_or("", |p| &p.message_id),
            ),
        })
        .collect();
    let top = combine(entries.iter().filter_map(|e| e.status.as_ref()));
    pb::SendMessageResponse {
        status: Some(top),
        entries,
    }
}
