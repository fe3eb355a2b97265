//! SendMessage: validate, route each message to a queue, group-commit them, answer one entry
//! per message.

use futures::future::join_all;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tonic::Request;

use super::client_id;
use super::status::combine;
use super::status::from_error;
use super::status::from_reject;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::batcher::now_ms;
use crate::command::Command;
use crate::core::BrokerCore;
use crate::model::QueueId;
use crate::model::tag_hash;
use crate::state::Outcome;

pub async fn send_message(
    core: &BrokerCore,
    req: Request<pb::SendMessageRequest>,
) -> pb::SendMessageResponse {
    let id_check = client_id(&req);
    let req = req.into_inner();
    let entry = |s: pb::Status, id: &str| pb::SendResultEntry {
        status: Some(s),
        message_id: id.to_string(),
        transaction_id: String::new(),
        offset: 0,
        recall_handle: String::new(),
    };
    let fail_all = |s: pb::Status| {
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
    };
    if let Err(s) = id_check {
        return fail_all(s);
    }
    if req.messages.is_empty() {
        return fail_all(status(Code::BadRequest, "no messages"));
    }
    let batch_bytes: usize = req.messages.iter().map(|m| m.body.len()).sum();
    if req.messages.len() > core.settings.limits.max_batch_messages {
        return fail_all(status(
            Code::BadRequest,
            format!(
                "a batch of {} messages exceeds the limit of {}",
                req.messages.len(),
                core.settings.limits.max_batch_messages
            ),
        ));
    }
    if batch_bytes > core.settings.limits.max_batch_bytes {
        return fail_all(status(
            Code::MessageBodyTooLarge,
            format!(
                "a batch of {batch_bytes} body bytes exceeds the limit of {}",
                core.settings.limits.max_batch_bytes
            ),
        ));
    }
    // A batch must share its topic (and type), as the SDKs guarantee.
    let topics: std::collections::BTreeSet<_> = req
        .messages
        .iter()
        .map(|m| m.topic.as_ref().map(|t| &t.name))
        .collect();
    if topics.len() > 1 {
        return fail_all(status(
            Code::BadRequest,
            "all messages of a batch must have the same topic",
        ));
    }

    let now = now_ms();
    let mut checked = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        checked.push(validate::message(
            m,
            core.settings.limits.max_body_bytes,
            now,
        ));
    }
    let Some(topic) = checked
        .iter()
        .find_map(|c| c.as_ref().ok().map(|m| m.topic.clone()))
    else {
        // Every message is invalid: answer each with its own reason.
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
        return pb::SendMessageResponse {
            status: Some(top),
            entries,
        };
    };
    let configs = match core.ensure_topic(&topic).await {
        Ok(c) if c.is_empty() => {
            return fail_all(status(
                Code::TopicNotFound,
                format!("topic {topic} does not exist"),
            ));
        }
        Ok(c) => c,
        Err(e) => return fail_all(from_error(&e)),
    };
    // Every (group, queue) of the topic on this node, in a fixed order.
    let slots: Vec<(u64, u32)> = configs
        .iter()
        .flat_map(|(g, c)| (0..c.queues).map(move |q| (*g, q)))
        .collect();
    // Plain messages prefer groups led here (no forwarding hop), spread round robin; clients'
    // queue choices are not reliable (the Python client always says queue 0), so the broker
    // picks, as the Apache proxy does.
    let led: Vec<(u64, u32)> = slots
        .iter()
        .copied()
        .filter(|(g, _)| core.group(*g).is_ok_and(|h| h.replica.is_leader()))
        .collect();
    let kind = configs[0].1.kind;

    let sends = checked.into_iter().map(|c| async {
        let mut m = c?;
        if !kind.accepts(m.kind) {
            return Err(status(
                Code::MessagePropertyConflictWithType,
                format!("topic {topic} does not accept {:?} messages", m.kind),
            ));
        }
        // Messages of one message group always go to one queue, whatever queue the client
        // picked, so the group keeps its order.
        let (g, q) = match &m.message_group {
            Some(mg) => slots[(tag_hash(Some(mg)) % slots.len() as u64) as usize],
            None => {
                let pool = if led.is_empty() { &slots } else { &led };
                pool[(core.next_round_robin() % pool.len() as u64) as usize]
            }
        };
        m.queue = QueueId(q);
        let id = m.message_id.clone();
        match core.submit(g, Command::Send(m)).await {
            // Under the simulator, sometimes lose the answer of a stored send: the client
            // must treat it as unknown.
            Ok(Outcome::Sent { .. }) if raft_store::buggify!() => Err(status(
                Code::MasterPersistenceTimeout,
                "answer lost (simulated)",
            )),
            Ok(Outcome::Sent { offset, .. }) => Ok((id, offset.0)),
            Ok(Outcome::Rejected(r)) => Err(from_reject(&r)),
            Ok(other) => Err(status(
                Code::InternalError,
                format!("unexpected outcome {other:?}"),
            )),
            Err(e) => Err(from_error(&e)),
        }
    });
    let results = join_all(sends).await;
    let entries: Vec<pb::SendResultEntry> = results
        .into_iter()
        .zip(&req.messages)
        .map(|(r, m)| match r {
            Ok((id, offset)) => pb::SendResultEntry {
                offset: offset as i64,
                ..entry(ok(), &id)
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
