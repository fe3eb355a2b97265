//! v2 status codes: mapping broker errors to the codes RocketMQ clients expect.
//!
//! Every business error travels as a `Status` inside a gRPC-OK response. Only codes the
//! official Rust 5.0.0 SDK knows are used (it panics on others): no 40019–40021, 40404, 41302,
//! 42901, 42902.

use raftmq_proto::v2::Code;
use raftmq_proto::v2::Status;
pub use raftmq_proto::v2util::combine;
pub use raftmq_proto::v2util::ok;
pub use raftmq_proto::v2util::status;

use crate::error::BrokerError;
use crate::state::Reject;

/// Maps a broker error to the code a RocketMQ client expects.
pub fn from_error(e: &BrokerError) -> Status {
    let code = match e {
        BrokerError::NotLeader { .. } | BrokerError::Unavailable(_) => Code::HaNotAvailable,
        BrokerError::Overloaded(_) => Code::TooManyRequests,
        BrokerError::Unknown(_) => Code::MasterPersistenceTimeout,
        BrokerError::Rejected(r) => return from_reject(r),
        BrokerError::Corrupt(_) | BrokerError::Store(_) | BrokerError::ReplicaFailed(_) => {
            Code::InternalError
        }
        BrokerError::Config(_) => Code::BadRequest,
    };
    status(code, e.to_string())
}

/// Maps a replicated refusal to a code.
pub fn from_reject(r: &Reject) -> Status {
    match r {
        Reject::TopicNotFound => status(Code::TopicNotFound, "topic not found"),
        Reject::QueueNotFound => status(Code::BadRequest, "no such queue or broker"),
        Reject::WrongMessageType => status(
            Code::MessagePropertyConflictWithType,
            "the topic does not accept this message type",
        ),
        Reject::InvalidReceipt => status(
            Code::InvalidReceiptHandle,
            "receipt handle is stale (acked, redelivered or changed since) or unknown",
        ),
        Reject::Invalid(why) => status(Code::BadRequest, format!("refused: {why}")),
        Reject::NoLongerInFlight => status(
            Code::InvalidReceiptHandle,
            "the delivery is no longer in flight (acknowledged, forwarded, or delivered again)",
        ),
        Reject::TxUnknown => status(
            Code::InvalidTransactionId,
            "no such transaction is waiting for a decision: unknown here, decided long ago, \
             or the transaction id names another message",
        ),
        Reject::TxDecided(end) => status(
            Code::PreconditionFailed,
            format!("the transaction was {} already", tx_end(*end)),
        ),
        Reject::TxNotDue => status(Code::BadRequest, "the transaction's check is not due"),
        Reject::TooManyTx => status(
            Code::TooManyRequests,
            format!(
                "{} transactions are waiting for a decision in this group; decide some first",
                crate::limits::MAX_PENDING_TX
            ),
        ),
        Reject::TimerNotPending => status(
            Code::NotFound,
            "no such scheduled message is waiting: it was delivered or recalled already, \
             or never scheduled",
        ),
    }
}

/// How a transaction ended, in words.
pub fn tx_end(e: crate::state::txn::TxEnd) -> &'static str {
    use crate::state::txn::TxEnd;
    match e {
        TxEnd::Committed => "committed",
        TxEnd::RolledBack => "rolled back",
        TxEnd::Discarded => "discarded after its last check-back",
    }
}
