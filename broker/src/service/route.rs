//! QueryRoute, Heartbeat, QueryAssignment, NotifyClientTermination, as a broker node answers
//! them for the groups it hosts (a nameserver answers for the whole cluster).

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2util;
use tonic::Request;

use super::client_id;
use super::convert::accepted_types;
use super::status::from_error;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::core::BrokerCore;

pub async fn query_route(
    core: &BrokerCore,
    req: Request<pb::QueryRouteRequest>,
) -> pb::QueryRouteResponse {
    let reply = |s: pb::Status, queues| pb::QueryRouteResponse {
        status: Some(s),
        message_queues: queues,
    };
    if let Err(s) = client_id(&req) {
        return reply(s, vec![]);
    }
    let all = v2util::is_rust_client(req.metadata());
    let req = req.into_inner();
    let topic = match validate::topic(req.topic.as_ref()) {
        Ok(t) => t,
        Err(s) => return reply(s, vec![]),
    };
    let configs = match core.ensure_topic(&topic).await {
        Ok(c) if c.is_empty() => {
            return reply(
                status(Code::TopicNotFound, format!("topic {topic} does not exist")),
                vec![],
            );
        }
        Ok(c) => c,
        Err(e) => return reply(from_error(&e), vec![]),
    };
    let mut queues = Vec::new();
    for (g, cfg) in configs {
        let (Ok(group), Ok(eps)) = (core.group(g), core.endpoints(g)) else {
            continue;
        };
        if eps.is_empty() {
            continue;
        }
        for id in 0..cfg.queues {
            queues.push(v2util::message_queue(
                &topic,
                id as i32,
                &group.name,
                v2util::queue_endpoints(&eps, id as u64, all),
                accepted_types(cfg.kind),
            ));
        }
    }
    reply(ok(), queues)
}

pub async fn heartbeat(
    core: &BrokerCore,
    req: Request<pb::HeartbeatRequest>,
) -> pb::HeartbeatResponse {
    let id = match client_id(&req) {
        Ok(id) => id,
        Err(s) => return pb::HeartbeatResponse { status: Some(s) },
    };
    core.clients().touch(&id);
    let req = req.into_inner();
    if let Some(g) = req.group.as_ref().filter(|g| !g.name.is_empty()) {
        let name = match validate::group(Some(g)) {
            Ok(n) => n,
            Err(s) => return pb::HeartbeatResponse { status: Some(s) },
        };
        if let Err(e) = core.ensure_group(&name).await {
            return pb::HeartbeatResponse {
                status: Some(from_error(&e)),
            };
        }
    }
    pb::HeartbeatResponse { status: Some(ok()) }
}

pub async fn query_assignment(
    core: &BrokerCore,
    req: Request<pb::QueryAssignmentRequest>,
) -> pb::QueryAssignmentResponse {
    let reply = |s: pb::Status, a| pb::QueryAssignmentResponse {
        status: Some(s),
        assignments: a,
    };
    let client = match client_id(&req) {
        Ok(id) => id,
        Err(s) => return reply(s, vec![]),
    };
    core.clients().touch(&client);
    let all = v2util::is_rust_client(req.metadata());
    // Spread push consumers of one group over the members, one member per client.
    let spread = crate::model::tag_hash(Some(&client));
    let req = req.into_inner();
    let (topic, group) = match (
        validate::topic(req.topic.as_ref()),
        validate::group(req.group.as_ref()),
    ) {
        (Ok(t), Ok(g)) => (t, g),
        (Err(s), _) | (_, Err(s)) => return reply(s, vec![]),
    };
    let configs = match core.ensure_topic(&topic).await {
        Ok(c) if c.is_empty() => {
            return reply(
                status(Code::TopicNotFound, format!("topic {topic} does not exist")),
                vec![],
            );
        }
        Ok(c) => c,
        Err(e) => return reply(from_error(&e), vec![]),
    };
    let group = match core.ensure_group(&group).await {
        Ok(g) => g,
        Err(e) => return reply(from_error(&e), vec![]),
    };
    let mut assignments = Vec::new();
    for (g, cfg) in configs {
        let (Ok(hosted), Ok(eps)) = (core.group(g), core.endpoints(g)) else {
            continue;
        };
        if eps.is_empty() {
            continue;
        }
        let mq = |id: i32| pb::Assignment {
            message_queue: Some(v2util::message_queue(
                &topic,
                id,
                &hosted.name,
                v2util::queue_endpoints(&eps, if id >= 0 { id as u64 } else { spread }, all),
                accepted_types(cfg.kind),
            )),
        };
        // A FIFO group reads queue by queue; any other group takes from every queue of a
        // broker in one receive (queue id -1), as the Apache proxy does.
        if group.fifo {
            assignments.extend((0..cfg.queues as i32).map(mq));
        } else {
            assignments.push(mq(-1));
        }
    }
    reply(ok(), assignments)
}

pub async fn notify_client_termination(
    core: &BrokerCore,
    req: Request<pb::NotifyClientTerminationRequest>,
) -> pb::NotifyClientTerminationResponse {
    match client_id(&req) {
        Ok(id) => {
            core.clients().remove(&id);
            pb::NotifyClientTerminationResponse { status: Some(ok()) }
        }
        Err(s) => pb::NotifyClientTerminationResponse { status: Some(s) },
    }
}
