//! The RaftMQ broker: commands in the Raft log, the state machines derived from them, and the
//! Apache RocketMQ v2 service.
//!
//! - [`model`]: topics, groups, stored messages, queue ids and offsets;
//! - [`command`]: the commands in the log and their versioned, append-only encoding;
//! - [`state`]: the pure replicated state machines (consume queues, receive state, consumer
//!   offsets) and `apply`;
//! - [`app`]: the state behind raft-store's `App`;
//! - [`batcher`]: group commit at the leader;
//! - [`replica`]: one replica (group, batching, message reads, change notifications);
//! - [`core`]: what front ends share (leader choice, retries, auto-creation, clients, renewal);
//! - [`service`]: the v2 `MessagingService`; [`admin`]: the admin service;
//! - [`forward`]: one-hop forwarding to a group's leader; [`node`]: a whole broker node
//!   (replicas, listeners, registration, preferred leaders, graceful stop); [`config`]: its
//!   typed TOML configuration;
//! - [`receipt`]: receipt handles;
//! - [`error`]: the error enum.

pub mod admin;
pub mod app;
pub mod batcher;
pub mod checkback;
pub mod clients;
pub mod clock;
pub mod command;
pub mod config;
pub mod core;
pub mod error;
pub mod filter;
pub mod forward;
pub mod limits;
pub mod listener;
pub mod model;
pub mod node;
pub mod reads;
pub mod receipt;
pub mod replica;
pub mod retention;
pub mod service;
pub mod state;
pub mod storage_guard;
pub mod ticker;

pub use error::BrokerError;
pub use error::Result;
