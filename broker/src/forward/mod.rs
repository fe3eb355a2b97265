//! One-hop forwarding between broker nodes, the one way a node that does not lead a group gets
//! a request to the node that does: commands to propose, receives, and reads that must run on
//! the leader (pulls and offset queries). It runs over the internal listener, signed with the
//! cluster credential, bincode-encoded with a decode limit. The receiving node only runs a
//! request locally: if it does not lead either, it says so and the sender retries after the
//! election, so a request never bounces around.
//!
//! [`wire`] holds what crosses the wire, [`client`] the sending side (with [`lane`], which
//! batches the commands forwarded to one leader), [`server`] the receiving side (which depends on the core; the core depends only on the client and the wire types).

pub mod client;
pub mod lane;
pub mod server;
pub mod wire;

pub use client::Forwarder;
pub use server::ForwardServer;
pub use wire::Popped;
