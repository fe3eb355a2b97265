//! The RaftMQ nameserver: brokers register their groups, leaders and topics about once a
//! second; clients ask for routes. Nameservers are independent peers (RocketMQ style): each
//! holds only the latest registration of every node, so any number can run side by side.
//!
//! - [`route_table`]: the pure table and route computation;
//! - [`service`]: the registration RPC and the v2 access-point RPCs (QueryRoute, Heartbeat,
//!   Telemetry, QueryAssignment, NotifyClientTermination).

pub mod route_table;
pub mod service;

pub use service::run;
