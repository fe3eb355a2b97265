//! The client's one error type, and the classification every retry decision rests on: did the
//! operation certainly not happen (safe to retry elsewhere), or is its outcome unknown?

use raftmq_proto::v2::Code;

/// Everything a client call can fail with.
///
/// The variants separate three situations a caller must treat differently:
/// - [`ClientError::Refused`] and [`ClientError::Unavailable`]: the broker certainly did not
///   perform the operation (a definite failure);
/// - [`ClientError::Unknown`]: the request may or may not have taken effect (a timeout, a
///   connection lost mid-call, a persistence timeout). For a send this means the message may
///   be stored; resending it with the same message id is safe for consumers that deduplicate
///   by message id;
/// - the rest are local mistakes (configuration, message, shutdown).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration is invalid; the message names the field.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The message (or request) was rejected before anything was sent.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The broker answered with a refusal that retrying will not change.
    #[error("refused by the broker: {message} (code {code})")]
    Refused {
        /// The v2 status code (see `apache.rocketmq.v2.Code`).
        code: i32,
        /// The broker's explanation.
        message: String,
    },
    /// Every attempt failed in a way that certainly left no effect (no leader, connection
    /// refused, throttled); trying again later may succeed.
    #[error("unavailable after {attempts} attempt(s): {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The outcome is unknown: the request may have been performed. Sends with this outcome
    /// must be treated as "maybe stored".
    #[error("outcome unknown after {attempts} attempt(s): {last}")]
    Unknown {
        /// Attempts made.
        attempts: u32,
        /// What made the outcome unknown.
        last: String,
    },
    /// A received message's body does not match its digest.
    #[error("message {message_id} is corrupted: {detail}")]
    Corrupted {
        /// The message's id.
        message_id: String,
        /// What did not match.
        detail: String,
    },
    /// The broker does not implement this operation.
    #[error("not supported by the broker: {0}")]
    Unsupported(String),
    /// The client has been shut down.
    #[error("the client is shut down")]
    Shutdown,
}

impl ClientError {
    /// True if the operation certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ClientError::Unknown { .. })
    }

    /// The v2 status code, for errors the broker answered with.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Refused { code, .. } => Code::try_from(*code).ok(),
            _ => None,
        }
    }
}

/// How one RPC attempt failed, for the retry loops.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// Certainly not performed; another attempt (elsewhere, later) may succeed.
    Retryable(String),
    /// Certainly not performed, and retrying will not help.
    Refused { code: i32, message: String },
    /// Maybe performed.
    Ambiguous(String),
}

impl Failure {
    /// Classifies a v2 status code other than OK.
    pub(crate) fn from_status(code: i32, message: &str) -> Failure {
        let text = || format!("{message} (code {code})");
        match Code::try_from(code) {
            // No leader / not ready / throttled: refused before anything was written.
            Ok(Code::HaNotAvailable | Code::TooManyRequests | Code::NotImplemented) => {
                Failure::Retryable(text())
            }
            // Timed out somewhere past the point of no return, or failed inside the broker.
            Ok(
                Code::MasterPersistenceTimeout
                | Code::SlavePersistenceTimeout
                | Code::ProxyTimeout
                | Code::RequestTimeout
                | Code::InternalError
                | Code::InternalServerError,
            ) => Failure::Ambiguous(text()),
            _ => Failure::Refused {
                code,
                message: message.to_string(),
            },
        }
    }

    /// Classifies a gRPC-level failure. Only a failure to connect is definite: a request
    /// that reached the wire may have been processed.
    pub(crate) fn from_grpc(s: &tonic::Status) -> Failure {
        let connect = raftmq_proto::v2util::is_connect_failure(s);
        match s.code() {
            tonic::Code::Unavailable if connect => Failure::Retryable(format!("{s}")),
            tonic::Code::Unimplemented => Failure::Refused {
                code: Code::NotImplemented as i32,
                message: s.message().to_string(),
            },
            tonic::Code::InvalidArgument => Failure::Refused {
                code: Code::BadRequest as i32,
                message: s.message().to_string(),
            },
            _ => Failure::Ambiguous(format!("{s}")),
        }
    }

    /// The last failure of a request given up after retries, where `maybe_done` says whether
    /// an earlier attempt may have been performed: then a definite "not performed" of the last
    /// attempt says nothing of that earlier one, and the outcome is unknown (seed
    /// `cluster_chaos 90091`: a recall committed just before a power loss of every node was
    /// retried until the attempts ran out on a group without a leader yet, and reported as not
    /// done; the checker then expected the recalled message).
    pub(crate) fn given_up(self, maybe_done: bool) -> Failure {
        match self {
            Failure::Retryable(last) if maybe_done => Failure::Ambiguous(format!(
                "{last}; an earlier attempt may have been performed"
            )),
            other => other,
        }
    }

    /// The final error after `attempts` attempts ended with this failure.
    pub(crate) fn into_error(self, attempts: u32) -> ClientError {
        match self {
            Failure::Retryable(last) => ClientError::Unavailable { attempts, last },
            Failure::Refused { code, message } => {
                if code == Code::NotImplemented as i32 || code == Code::Unsupported as i32 {
                    ClientError::Unsupported(message)
                } else {
                    ClientError::Refused { code, message }
                }
            }
            Failure::Ambiguous(last) => ClientError::Unknown { attempts, last },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Given up after an attempt that may have been performed: unknown, whatever the last
    /// attempt said (a definite refusal stays one: it says something about the request).
    #[test]
    fn a_request_given_up_after_an_ambiguous_attempt_is_unknown() {
        let last = || Failure::Retryable("no leader".into());
        assert!(matches!(
            last().given_up(true).into_error(3),
            ClientError::Unknown { .. }
        ));
        assert!(matches!(
            last().given_up(false).into_error(3),
            ClientError::Unavailable { .. }
        ));
        let refused = Failure::Refused {
            code: Code::BadRequest as i32,
            message: "bad".into(),
        };
        assert!(matches!(
            refused.given_up(true).into_error(1),
            ClientError::Refused { .. }
        ));
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            Failure::from_status(Code::HaNotAvailable as i32, "no leader"),
            Failure::Retryable(_)
        ));
        assert!(matches!(
            Failure::from_status(Code::MasterPersistenceTimeout as i32, "commit timed out"),
            Failure::Ambiguous(_)
        ));
        assert!(matches!(
            Failure::from_status(Code::TopicNotFound as i32, "no topic"),
            Failure::Refused { .. }
        ));
        let refused = tonic::Status::unavailable("tcp connect error: Connection refused");
        assert!(matches!(
            Failure::from_grpc(&refused),
            Failure::Retryable(_)
        ));
        let reset = tonic::Status::unavailable("connection reset by peer");
        assert!(matches!(Failure::from_grpc(&reset), Failure::Ambiguous(_)));
        let deadline = tonic::Status::deadline_exceeded("request timeout");
        assert!(matches!(
            Failure::from_grpc(&deadline),
            Failure::Ambiguous(_)
        ));
        let e = Failure::Ambiguous("x".into()).into_error(3);
        assert!(!e.is_definite());
        assert!(
            Failure::from_status(Code::Unsupported as i32, "no")
                .into_error(1)
                .is_definite()
        );
    }
}
