//! v2 status codes: building statuses and mapping broker errors to codes.
//!
//! Every business error travels as a `Status` inside a gRPC-OK response. Only codes the
//! official Rust 5.0.0 SDK knows are used (it panics on others): no 40019–40021, 40404, 41302,
//! 42901, 42902.

use raftmq_proto::v2::Code;
use raftmq_proto::v2::Status;

use crate::error::BrokerError;
use crate::state::Reject;

/// A status with `code` and a readable message.
pub fn status(code: Code, message: impl Into<String>) -> Status {
    Status {
        code: code as i32,
        message: message.into(),
    }
}

/// The OK status.
pub fn ok() -> Status {
    status(Code::Ok, "OK")
}

/// Maps a broker error to the code a RocketMQ client expects.
pub fn from_error(e: &BrokerError) -> Status {
    let code = match e {
        BrokerError::NotLeader { .. } | BrokerError::Unavailable(_) => Code::HaNotAvailable,
        BrokerError::Unknown(_) => Code::MasterPersistenceTimeout,
        BrokerError::Rejected(r) => return from_reject(r),
        BrokerError::Corrupt(_) | BrokerError::Store(_) => Code::InternalError,
        BrokerError::Config(_) => Code::BadRequest,
    };
    status(code, e.to_string())
}

/// Maps a replicated refusal to a code.
pub fn from_reject(r: &Reject) -> Status {
    match r {
        Reject::TopicNotFound => status(Code::TopicNotFound, "topic not found"),
        Reject::QueueNotFound => status(Code::BadRequest, "no such queue in this topic"),
        Reject::WrongMessageType => status(
            Code::MessagePropertyConflictWithType,
            "the topic does not accept this message type",
        ),
        Reject::InvalidReceipt => status(
            Code::InvalidReceiptHandle,
            "receipt handle is stale (acked, redelivered or changed since) or unknown",
        ),
    }
}

/// The common code of `entries`, or MULTIPLE_RESULTS.
pub fn combine<'a>(entries: impl Iterator<Item = &'a Status>) -> Status {
    let mut first: Option<&Status> = None;
    for s in entries {
        match first {
            None => first = Some(s),
            Some(f) if f.code != s.code => {
                return status(Code::MultipleResults, "entries have different results");
            }
            Some(_) => {}
        }
    }
    first
        .cloned()
        .unwrap_or_else(|| status(Code::BadRequest, "no entries"))
}
