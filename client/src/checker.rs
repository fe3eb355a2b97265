//! The transaction checker: what a producer answers when the broker asks about a transaction
//! it did not commit or roll back in time. Beside the session code that receives the question
//! (`base.rs`) and the producer that installs the checker, and imported by both.

use crate::message::ReceivedMessage;

/// A checker's verdict on an orphaned transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionResolution {
    /// Make the half message visible to consumers.
    Commit,
    /// Discard the half message.
    Rollback,
    /// Not decided yet: the broker asks again later.
    Unknown,
}

/// Decides the fate of a transaction whose producer did not commit or roll back in time;
/// the broker asks over the Telemetry stream and the client answers with EndTransaction.
///
/// Any `Fn(&ReceivedMessage) -> TransactionResolution` is a checker.
pub trait TransactionChecker: Send + Sync + 'static {
    /// The verdict for the half message `message`.
    fn check(&self, message: &ReceivedMessage) -> TransactionResolution;
}

impl<F> TransactionChecker for F
where
    F: Fn(&ReceivedMessage) -> TransactionResolution + Send + Sync + 'static,
{
    fn check(&self, message: &ReceivedMessage) -> TransactionResolution {
        self(message)
    }
}
