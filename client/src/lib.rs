//! `raftmq-client`: the native Rust client for RaftMQ, speaking the Apache RocketMQ 5.x gRPC
//! protocol (`apache.rocketmq.v2`), so it also works against other RocketMQ 5 proxies.
//!
//! - [`Producer`]: [`send`](Producer::send), [`send_async`](Producer::send_async),
//!   [`send_batch`](Producer::send_batch); tags, keys, properties, FIFO message groups,
//!   delivery times, and [transactions](Producer::begin_transaction) with a
//!   [`TransactionChecker`] the broker can call back.
//! - [`SimpleConsumer`]: receive, ack, change invisible duration.
//! - [`PushConsumer`]: a listener called with bounded concurrency; FIFO mode keeps each
//!   message group in order.
//! - [`PullConsumer`]: offset-based reading — pick queues, seek to the beginning, the end or
//!   a store time, pull, commit.
//!
//! **Outcomes.** Every failure says whether the operation certainly did not happen
//! ([`ClientError::is_definite`]). Sends are retried (with backoff, on another queue, after
//! a route refresh) only when they certainly failed; a timeout or a lost connection is
//! [`ClientError::Unknown`]: the message may be stored. Set
//! [`ClientConfig::retry_unknown`] to resend those too (same message id, so consumers can
//! deduplicate).
//!
//! **Failover.** Routes list every member of a Raft group, leader first; any member
//! forwards to the leader, so a send survives a leader change by trying the next member.
//!
//! **Simulation.** The crate uses `tokio` and `tonic` through the `madsim-tokio` and
//! `madsim-tonic` packages and takes randomness and time from a small shim, so the same
//! code runs deterministically under the madsim simulator (`RUSTFLAGS="--cfg madsim"`).

#![deny(missing_docs)]

mod base;
mod checker;
mod config;
mod consumer;
mod error;
mod message;
mod producer;
mod pull;
mod push;
mod route;
mod rpc;
mod rt;

pub use config::ClientConfig;
pub use consumer::Filter;
pub use consumer::SimpleConsumer;
pub use consumer::SimpleConsumerBuilder;
pub use error::ClientError;
pub use message::Message;
pub use message::MessageKind;
pub use message::ReceivedMessage;
pub use message::SendReceipt;
pub use producer::Producer;
pub use producer::ProducerBuilder;
pub use producer::SendHandle;
pub use producer::Transaction;
pub use producer::TransactionChecker;
pub use producer::TransactionResolution;
pub use pull::PullConsumer;
pub use pull::PullConsumerBuilder;
pub use pull::Pulled;
pub use pull::SeekTo;
pub use push::ConsumeResult;
pub use push::PushConsumer;
pub use push::PushConsumerBuilder;
pub use route::Queue;
