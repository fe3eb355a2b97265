//! QueryRoute, Heartbeat, QueryAssignment, NotifyClientTermination.

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tonic::Request;

use super::client_id;
use super::convert::accepted_types;
use super::status::from_error;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::core::BrokerCore;

/// The endpoints routes point at: the advertised address, else the one the client dialed.
fn endpoints(core: &BrokerCore, dialed: Option<&pb::Endpoints>) -> Option<pb::Endpoints> {
    if let Some((host, port)) = &core.settings.advertised {
        let scheme = if host.parse::<std::net::Ipv4Addr>().is_ok() {
            pb::AddressScheme::IPv4
        } else if host.parse::<std::net::Ipv6Addr>().is_ok() {
            pb::AddressScheme::IPv6
        } else {
            pb::AddressScheme::DomainName
        };
        return Some(pb::Endpoints {
            scheme: scheme as i32,
            addresses: vec![pb::Address {
                host: host.clone(),
                port: *port as i32,
            }],
        });
    }
    dialed.filter(|e| !e.addresses.is_empty()).cloned()
}

fn broker(core: &BrokerCore, eps: pb::Endpoints) -> pb::Broker {
    pb::Broker {
        name: core.settings.broker_name.clone(),
        id: 0,
        endpoints: Some(eps),
    }
}

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
    let req = req.into_inner();
    let topic = match validate::topic(req.topic.as_ref()) {
        Ok(t) => t,
        Err(s) => return reply(s, vec![]),
    };
    let Some(eps) = endpoints(core, req.endpoints.as_ref()) else {
        return reply(
            status(Code::IllegalAccessPoint, "no access point to route to"),
            vec![],
        );
    };
    let cfg = match core.ensure_topic(&topic).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return reply(
                status(Code::TopicNotFound, format!("topic {topic} does not exist")),
                vec![],
            );
        }
        Err(e) => return reply(from_error(&e), vec![]),
    };
    let queues = (0..cfg.queues)
        .map(|id| pb::MessageQueue {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: topic.clone(),
            }),
            id: id as i32,
            permission: pb::Permission::ReadWrite as i32,
            broker: Some(broker(core, eps.clone())),
            accept_message_types: accepted_types(cfg.kind),
        })
        .collect();
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
    core.touch_client(&id);
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
    match client_id(&req) {
        Ok(id) => core.touch_client(&id),
        Err(s) => return reply(s, vec![]),
    }
    let req = req.into_inner();
    let (topic, group) = match (
        validate::topic(req.topic.as_ref()),
        validate::group(req.group.as_ref()),
    ) {
        (Ok(t), Ok(g)) => (t, g),
        (Err(s), _) | (_, Err(s)) => return reply(s, vec![]),
    };
    let Some(eps) = endpoints(core, req.endpoints.as_ref()) else {
        return reply(
            status(Code::IllegalAccessPoint, "no access point to route to"),
            vec![],
        );
    };
    let cfg = match core.ensure_topic(&topic).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return reply(
                status(Code::TopicNotFound, format!("topic {topic} does not exist")),
                vec![],
            );
        }
        Err(e) => return reply(from_error(&e), vec![]),
    };
    let group = match core.ensure_group(&group).await {
        Ok(g) => g,
        Err(e) => return reply(from_error(&e), vec![]),
    };
    let mq = |id: i32| pb::Assignment {
        message_queue: Some(pb::MessageQueue {
            topic: Some(pb::Resource {
                resource_namespace: String::new(),
                name: topic.clone(),
            }),
            id,
            permission: pb::Permission::ReadWrite as i32,
            broker: Some(broker(core, eps.clone())),
            accept_message_types: accepted_types(cfg.kind),
        }),
    };
    // A FIFO group reads queue by queue; any other group takes from every queue of the broker
    // in one receive (queue id -1), as the Apache proxy does.
    let assignments = if group.fifo {
        (0..cfg.queues as i32).map(mq).collect()
    } else {
        vec![mq(-1)]
    };
    reply(ok(), assignments)
}

pub async fn notify_client_termination(
    core: &BrokerCore,
    req: Request<pb::NotifyClientTerminationRequest>,
) -> pb::NotifyClientTerminationResponse {
    match client_id(&req) {
        Ok(id) => {
            core.remove_client(&id);
            pb::NotifyClientTerminationResponse { status: Some(ok()) }
        }
        Err(s) => pb::NotifyClientTerminationResponse { status: Some(s) },
    }
}
