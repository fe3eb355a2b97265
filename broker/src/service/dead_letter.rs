//! ForwardMessageToDeadLetterQueue: a consumer gives a received message up.
//!
//! The official FIFO push consumers retry a message locally (without receiving it again) and,
//! once their attempts run out, call this RPC every second until it answers OK. It proposes
//! [`Command::DeadLetter`], which moves the delivery its receipt names to the group's
//! dead-letter topic (`%DLQ%<group>`, read like any other topic, the message keeping its id)
//! and ends the delivery as an ack would.
//!
//! A receipt of a delivery the group was given that is no longer in flight is answered OK,
//! with a message saying nothing was moved: the delivery was acknowledged, forwarded already
//! (a retry whose first answer was lost) or delivered again, so the caller holds nothing to
//! give up, and an error would make it call forever. A receipt the group was never given (or
//! one sent with another topic or group) is INVALID_RECEIPT_HANDLE.

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tonic::Request;

use super::client_id;
use super::grpc_timeout;
use super::served_receipt;
use super::status::from_error;
use super::status::from_reject;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::command::Ack;
use crate::command::Command;
use crate::core::BrokerCore;
use crate::state::Outcome;
use crate::state::Reject;

pub async fn forward_message_to_dead_letter_queue(
    core: &BrokerCore,
    req: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
) -> pb::ForwardMessageToDeadLetterQueueResponse {
    let answer = |s: pb::Status| pb::ForwardMessageToDeadLetterQueueResponse { status: Some(s) };
    match client_id(&req) {
        Ok(c) => core.clients().touch(&c),
        Err(s) => return answer(s),
    }
    let wait = grpc_timeout(&req);
    let req = req.into_inner();
    let (group, topic) = match (
        validate::group(req.group.as_ref()),
        validate::topic(req.topic.as_ref()),
    ) {
        (Ok(g), Ok(t)) => (g, t),
        (Err(s), _) | (_, Err(s)) => return answer(s),
    };
    let (g, r) = match served_receipt(core, &req.receipt_handle) {
        Ok(x) => x,
        Err(s) => return answer(s),
    };
    let cmd = Command::DeadLetter(Ack {
        group: group.clone(),
        topic: topic.clone(),
        receipt: r,
    });
    answer(match core.submit_within(g, cmd, wait).await {
        Ok(Outcome::DeadLettered) => {
            core.untrack_renewal(g, &group, &topic, &r);
            ok()
        }
        Ok(Outcome::Rejected(Reject::NoLongerInFlight)) => {
            core.untrack_renewal(g, &group, &topic, &r);
            status(
                Code::Ok,
                "the delivery is no longer in flight (acknowledged, forwarded already or \
                 delivered again): nothing was moved",
            )
        }
        Ok(Outcome::Rejected(x)) => from_reject(&x),
        Ok(other) => status(Code::InternalError, format!("unexpected outcome {other:?}")),
        Err(e) => from_error(&e),
    })
}
