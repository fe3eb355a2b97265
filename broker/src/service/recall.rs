//! RecallMessage: cancel a scheduled (DELAY) message before its time.
//!
//! The send's answer gives each scheduled message a recall handle naming its group and timer
//! ([`handle`]); a recall proposes [`Command::Recall`] on that group, which removes the timer if
//! it is still pending. A message recalled in time is never delivered; a recall after delivery
//! (or a second recall) finds no timer and is answered NOT_FOUND. RocketMQ answers both with its
//! remoting code ILLEGAL_OPERATION; v2 has no code of that name, and NOT_FOUND says what
//! happened.

use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use tonic::Request;

use super::client_id;
use super::grpc_timeout;
use super::status::from_error;
use super::status::from_reject;
use super::status::ok;
use super::status::status;
use super::validate;
use crate::command::Command;
use crate::command::Recall;
use crate::command::TimerKey;
use crate::core::BrokerCore;
use crate::state::Outcome;

use raftmq_proto::v2util::RECALL_HANDLE_V1 as V1;

/// The recall handle of a message scheduled in group `group` (id) of `topic`:
/// `rmq1:<group>:<due ms>:<log index>:<pos>:<message id>`. Opaque to clients; the topic is not
/// in it (the request names it, and the timer checks it with the message id).
pub fn handle(group: u64, _topic: &str, key: &TimerKey, message_id: &str) -> String {
    format!(
        "{V1}:{group}:{}:{}:{}:{message_id}",
        key.due_ms, key.log_index, key.pos
    )
}

/// Parses a [`handle`]: group, timer and message id.
pub fn parse(h: &str) -> Option<(u64, TimerKey, String)> {
    let mut parts = h.splitn(6, ':');
    if parts.next()? != V1 {
        return None;
    }
    let group = parts.next()?.parse().ok()?;
    let key = TimerKey {
        due_ms: parts.next()?.parse().ok()?,
        log_index: parts.next()?.parse().ok()?,
        pos: parts.next()?.parse().ok()?,
    };
    let id = parts.next()?.to_string();
    if id.is_empty() {
        return None;
    }
    Some((group, key, id))
}

pub async fn recall_message(
    core: &BrokerCore,
    req: Request<pb::RecallMessageRequest>,
) -> pb::RecallMessageResponse {
    let answer = |s: pb::Status, id: String| pb::RecallMessageResponse {
        status: Some(s),
        message_id: id,
    };
    if let Err(s) = client_id(&req) {
        return answer(s, String::new());
    }
    let wait = grpc_timeout(&req);
    let req = req.into_inner();
    let topic = match validate::topic(req.topic.as_ref()) {
        Ok(t) => t,
        Err(s) => return answer(s, String::new()),
    };
    let Some((group, key, message_id)) = parse(&req.recall_handle) else {
        return answer(
            status(
                Code::BadRequest,
                "the recall handle is not one this broker issued",
            ),
            String::new(),
        );
    };
    let cmd = Command::Recall(Recall {
        topic,
        message_id: message_id.clone(),
        key,
    });
    match core.submit_within(group, cmd, wait).await {
        Ok(Outcome::Done) => answer(ok(), message_id),
        Ok(Outcome::Rejected(r)) => answer(from_reject(&r), message_id),
        Ok(other) => answer(
            status(Code::InternalError, format!("unexpected outcome {other:?}")),
            message_id,
        ),
        Err(e) => answer(from_error(&e), message_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_parses_back_and_a_foreign_one_does_not() {
        let key = TimerKey {
            due_ms: 1_700_000_000_123,
            log_index: 42,
            pos: 77,
        };
        let h = handle(3, "t", &key, "id:with:colons");
        assert_eq!(parse(&h), Some((3, key, "id:with:colons".to_string())));
        assert_eq!(raftmq_proto::v2util::recall_handle_group(&h), Some(3));
        for bad in [
            "",
            "rmq1",
            "rmq2:3:1:2:3:x",
            "rmq1:x:1:2:3:id",
            "rmq1:3:1:2:3:",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
