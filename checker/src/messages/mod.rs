//! The message-level checker of the whole-cluster simulation and the real-process suite: pure
//! code over a client history, one module per invariant (each with histories that must and
//! must not trip it). Anomaly names follow the testing plan (§5.3):
//!
//! - `lost`: a send acknowledged OK that no consumer of the main group ever received;
//! - `unexpected`: a delivered message that no send attempted;
//! - `aborted-read`: a delivered message whose send the client was told definitely failed;
//! - `corrupted`: a delivered body differs from the one sent;
//! - `future-read`: a delivery completed before the message's send was invoked;
//! - `duplicate`: one message id stored at two queue positions (the client resends only
//!   after definite failures, so the retry-duplicate bound is zero);
//! - `inconsistent-offsets`: one queue position read back as two different messages;
//! - `acked-redelivered`: a receive invoked after an OK ack of the message returned it
//!   (for a send that may repeat, an extra copy: `retry-duplicate`, counted, allowed);
//! - `concurrent-ownership`: two deliveries of one message whose invisibility windows must
//!   have overlapped (a message held by two consumers at once; a window is the requested
//!   duration less [`RECEIPT_CLOCK_SLACK_PPM`]);
//! - `order-violation`: a FIFO consumer was handed an earlier message of a message group
//!   after it had acknowledged a later one;
//! - `poll-skip`: a FIFO consumer got a message of a group while an earlier acknowledged
//!   send of that group had never been delivered;
//! - `nonmonotonic-poll` / `hole`: a pull returned offsets that do not start at the asked
//!   offset and increase by one, or a next offset behind the request;
//! - `commit-regression`: a committed-offset read returned less than a commit that had
//!   completed OK before the read began;
//! - messages the environment saw retention delete ([`Op::Expired`]) are `expired`: not
//!   `lost`, and a FIFO consumer may go past them;
//! - `premature-deletion`: one of them was seen deleted sooner after its send than the
//!   retention age the observation names (the simulator's log tap also checks this itself,
//!   entry by entry, in cluster time);
//! - scheduled messages ([`Op::Scheduled`]): `early-delivery` (delivered before its time),
//!   `recalled-delivered` (delivered although a recall of it succeeded), `timer-duplicate`
//!   (handed out as a first delivery twice: two copies), and `timer-lost` (`lost` for a
//!   scheduled message; one whose recall succeeded or may have is not expected);
//! - transactions ([`Op::Transaction`]): `txn-rolled-back-visible` (a message its producer
//!   rolls back was delivered: by a rollback, or by a check-back its checker answers with
//!   one), `txn-duplicate` (a committed message handed out as a first delivery twice) and
//!   `txn-committed-lost` (`lost` for a transaction whose commit was answered OK; a half
//!   message alone is not owed to anyone), and `txn-unchecked` (a half message its producer
//!   left undecided that no check-back reached within the bound an [`Op::TxCheckOwed`] sets);
//! - a reset ([`Op::Reset`], [`resets`]) may explain a message delivered again after its ack
//!   or while held, a FIFO group starting over, a scheduled or committed message handed out
//!   first twice: those are not reported when a reset may have happened in between;
//! - a SQL92-filtered group ([`filtered`]): `filter-mismatch` (it got a message its
//!   expression does not match) and `filter-lost` (a matching message owed to the plain
//!   topic's consumers never reached it).
//!
//! | module | anomalies |
//! |---|---|
//! | [`sends`] | (the index of what was sent and acknowledged every check uses) |
//! | [`delivered`] | `unexpected`, `aborted-read`, `corrupted`, `future-read` |
//! | [`lost`] | `lost` (and the delivery counts) |
//! | [`positions`] | `duplicate`, `inconsistent-offsets` |
//! | [`pulls`] | `hole`, `nonmonotonic-poll` |
//! | [`receipts`] | `acked-redelivered`, `concurrent-ownership` |
//! | [`fifo`] | `order-violation`, `poll-skip` |
//! | [`offsets`] | `commit-regression` |
//! | [`retention`] | `premature-deletion` (and the `expired` set `lost` and [`fifo`] leave out) |
//! | [`timers`] | `early-delivery`, `recalled-delivered`, `timer-duplicate` (`timer-lost` in [`lost`]) |
//! | [`txns`] | `txn-rolled-back-visible`, `txn-duplicate`, `txn-unchecked` (`txn-committed-lost`: [`lost`]) |
//! | [`filtered`] | `filter-mismatch`, `filter-lost` (and the main group's checks on its own view) |
//! | [`resets`] | (what a reset excuses in [`receipts`], [`fifo`], [`timers`] and [`txns`]) |

mod delivered;
mod fifo;
pub mod filtered;
mod lost;
mod offsets;
mod positions;
mod pulls;
mod receipts;
mod resets;
mod retention;
mod sends;
#[cfg(test)]
mod testing;
mod timers;
mod txns;

use serde::Deserialize;
use serde::Serialize;

/// How much shorter than requested an invisibility window may be, in parts per million: the
/// cluster clock's slew (`broker::clock::SLEW_PPM`, 1,000) plus the simulator's largest
/// monotonic drift (500), rounded up.
/// (The crate is pure and does not link the broker: `simulation` asserts the relation with
/// `broker::clock::SLEW_PPM` at compile time.)
pub const RECEIPT_CLOCK_SLACK_PPM: u64 = 2_000;

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Result3 {
    /// Succeeded.
    Ok,
    /// Definitely did not happen.
    Fail,
    /// Unknown (timeout, connection lost): may or may not have happened.
    Info,
}

/// A queue position: (broker, queue id, offset).
pub type Pos = (String, i32, i64);

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Message id.
    pub id: String,
    /// Body.
    pub body: Vec<u8>,
    /// Delivery attempt.
    pub attempt: u32,
    /// Where it is stored, if the broker said.
    pub pos: Option<Pos>,
}

/// One client operation; times are microseconds of (virtual) time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Op {
    /// A send; `group` is the FIFO message group.
    Send {
        /// Message id.
        id: String,
        /// Body.
        body: Vec<u8>,
        /// Message group.
        group: Option<String>,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
        /// Where the broker stored it (OK sends).
        pos: Option<Pos>,
        /// The client may have stored it more than once under this id: it resends after
        /// unknown outcomes, as the official SDKs do. Its extra copies are `retry-duplicate`s
        /// (allowed, counted), so a delivery after an ack or two overlapping deliveries are
        /// not violations for it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        may_repeat: bool,
        /// The topic, when not the run's plain or FIFO topic (jepsen's Python clients use
        /// their own): a SQL92-filtered group on the plain topic is owed none of these.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
    },
    /// A receive by `consumer`; `fifo` if the consumer group is FIFO.
    Receive {
        /// Consumer process.
        consumer: u32,
        /// FIFO consumer group.
        fifo: bool,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Invisible duration asked for.
        invisible_us: u64,
        /// What came back.
        msgs: Vec<Delivered>,
    },
    /// An ack.
    Ack {
        /// Consumer process.
        consumer: u32,
        /// Message id.
        id: String,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// A pull of one queue from `from`.
    Pull {
        /// Broker.
        broker: String,
        /// Queue.
        queue: i32,
        /// Offset asked.
        from: i64,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// (offset, id, body) in answer order.
        msgs: Vec<(i64, String, Vec<u8>)>,
        /// Next offset answered.
        next: i64,
    },
    /// A forward-only offset commit.
    Commit {
        /// Broker.
        broker: String,
        /// Queue.
        queue: i32,
        /// Offset.
        offset: i64,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// Messages retention deleted, as the environment observed them (the simulator's log
    /// tap; the real-process suite's reads of where each queue starts), by the time the
    /// observation completed.
    Expired {
        /// Message ids.
        ids: Vec<String>,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// The brokers' retention age, when the observer knows it: then a deletion observed
        /// less than this long after the message's send was invoked is `premature-deletion`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        age_us: Option<u64>,
    },
    /// The send of `id` (recorded just before this) carried a delivery time: a delivery that
    /// completes before `not_before` is early. `not_before` is the delivery time on the
    /// history's clock, less what the clocks may disagree by (the producer knows).
    Scheduled {
        /// Message id.
        id: String,
        /// Invoked (of the send).
        invoked: u64,
        /// No delivery may complete before this (µs).
        not_before: u64,
    },
    /// A recall of scheduled message `id` (v2 RecallMessage). OK: it will never be delivered;
    /// a definite failure: it was not pending (delivered already, or about to be).
    Recall {
        /// Message id.
        id: String,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// The send of `id` (recorded just before this) was a transaction's half message, and the
    /// producer means it to end committed (`commit`) or rolled back, whether it decides itself
    /// or its checker answers a check-back: its checker gives the same answer.
    Transaction {
        /// Message id.
        id: String,
        /// Invoked (of the send).
        invoked: u64,
        /// The producer's (and its checker's) decision.
        commit: bool,
    },
    /// The producer ended transaction `id` (v2 EndTransaction). A commit answered OK must be
    /// delivered; a rollback's message never may be.
    EndTx {
        /// Message id.
        id: String,
        /// Commit or roll back.
        commit: bool,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// A check-back reached the producer: its transaction checker was asked about `id`.
    TxChecked {
        /// Message id.
        id: String,
        /// When.
        at: u64,
    },
    /// The environment's promise from `from` on (faults healed, leaders elected): a half
    /// message acknowledged OK at or after `from` that its producer leaves undecided (no
    /// end-transaction, or only ones that definitely failed) must reach the producer's
    /// checker within `within` of its acknowledgement, when the history lasts that long.
    TxCheckOwed {
        /// Start of the promise.
        from: u64,
        /// The bound: the first check's delay, one more interval and slack.
        within: u64,
    },
    /// An operator reset the plain (`fifo` false) or FIFO consumer group to the earliest
    /// message of its topic ([`resets`]): it may get every message again.
    Reset {
        /// The FIFO group (else the plain one).
        fifo: bool,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Outcome.
        result: Result3,
    },
    /// A read of the committed offset.
    ReadCommitted {
        /// Broker.
        broker: String,
        /// Queue.
        queue: i32,
        /// Invoked.
        invoked: u64,
        /// Completed.
        completed: u64,
        /// Value read (`None`: never committed).
        value: Option<i64>,
    },
}

/// One violation: its name (the testing plan's vocabulary) and a readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// Anomaly name, e.g. `lost`.
    pub kind: &'static str,
    /// What exactly.
    pub detail: String,
}

pub(crate) fn anomaly(kind: &'static str, detail: String) -> Anomaly {
    Anomaly { kind, detail }
}

/// Counts for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sends acknowledged OK.
    pub sent_ok: usize,
    /// Sends that definitely failed.
    pub sent_fail: usize,
    /// Sends with unknown outcome.
    pub sent_info: usize,
    /// Unknown sends that were delivered (they happened).
    pub recovered: usize,
    /// Distinct messages received by consumers.
    pub received: usize,
    /// Deliveries beyond the first.
    pub redeliveries: usize,
    /// FIFO deliveries checked for order.
    pub fifo_delivered: usize,
    /// Messages read by pulls.
    pub pulled: usize,
    /// Extra copies of sends that may repeat (`retry-duplicate`: allowed, counted).
    #[serde(default)]
    pub retry_duplicates: usize,
    /// FIFO messages whose send ended unknown and which were stored after later sends of
    /// their group (allowed: order is promised among acknowledged sends; counted).
    #[serde(default)]
    pub late_unknown_sends: usize,
    /// Acknowledged messages retention deleted (old enough) before any consumer got them.
    #[serde(default)]
    pub expired: usize,
    /// Scheduled messages sent (any outcome).
    #[serde(default)]
    pub scheduled: usize,
    /// Scheduled messages recalled OK.
    #[serde(default)]
    pub recalled: usize,
    /// Half messages sent (any outcome).
    #[serde(default)]
    pub transactions: usize,
    /// Transactions whose producer's commit was answered OK.
    #[serde(default)]
    pub tx_committed: usize,
    /// Check-backs that reached a producer.
    #[serde(default)]
    pub tx_checks: usize,
    /// Transactions owed a check ([`Op::TxCheckOwed`]) and judged (the history lasted long
    /// enough).
    #[serde(default)]
    pub tx_owed: usize,
    /// The longest time from a judged transaction's acknowledgement to its first check (µs).
    #[serde(default)]
    pub tx_first_check_max_us: u64,
    /// Distinct messages the SQL92-filtered group received ([`filtered`]).
    #[serde(default)]
    pub filtered_received: usize,
    /// Resets of a consumer group that may have happened ([`resets`]).
    #[serde(default)]
    pub resets: usize,
}

/// Checks `history`. Deliveries by receives (plain and FIFO consumers) count for `lost`;
/// pulls are checked for consistency only. A SQL92-filtered group's receives and acks
/// ([`filtered`]) are checked apart, on their own view of the history.
pub fn check(history: &[Op]) -> (Vec<Anomaly>, Stats) {
    let Some((main, view)) = filtered::split(history) else {
        return check_group(history);
    };
    let (mut out, mut st) = check_group(&main);
    let (found, view_st) = check_group(&view);
    let mut sends = sends::Sends::index(&view);
    retention::index(&view, &mut sends);
    filtered::check(&view, &sends, found, &mut out);
    st.filtered_received = view_st.received;
    (out, st)
}

/// [`check`] for one consumer group's view of the history.
fn check_group(history: &[Op]) -> (Vec<Anomaly>, Stats) {
    let mut out = Vec::new();
    let mut st = Stats::default();
    let mut sends = sends::Sends::index(history);
    retention::index(history, &mut sends);
    let resets = resets::Resets::index(history);
    st.resets = resets.count();
    delivered::check(history, &sends, &mut out);
    positions::check(history, &sends, &mut out, &mut st);
    pulls::check(history, &mut out, &mut st);
    receipts::check(history, &sends, &resets, &mut out, &mut st);
    fifo::check(history, &sends, &resets, &mut out, &mut st);
    offsets::check(history, &mut out);
    retention::check(history, &sends, &mut out);
    lost::check(history, &sends, &mut out, &mut st);
    timers::check(history, &sends, &resets, &mut out, &mut st);
    txns::check(history, &sends, &resets, &mut out, &mut st);
    (out, st)
}
