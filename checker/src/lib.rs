//! RaftMQ's checkers: pure code, history in, anomalies out — no async, no IO, no clock — so
//! the deterministic simulator (`simulation/`) and the real-process chaos suite (`jepsen/`)
//! judge runs with the same code and name anomalies the same way.
//!
//! - [`history`] and [`raft`]: a Raft-level run (proposals and what every replica applied);
//! - [`messages`]: message histories (plain and FIFO producers and consumers, pulls, offset
//!   commits), one module per invariant, with the anomaly names of `docs/testing.md`;
//! - [`jsonl`]: the `history.jsonl` file both suites write and the `results.json` layout.

pub mod history;
pub mod jsonl;
pub mod messages;
pub mod raft;
