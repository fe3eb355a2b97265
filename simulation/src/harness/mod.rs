//! The simulated clusters the scenarios drive, and the one view of them the nemesis needs.
//!
//! - [`nodes`]: simulated machines with their own disks (boot, kill, restart, clog, pause);
//! - [`raft`]: a bare Raft group of [`crate::recorder::Recorder`] replicas;
//! - [`brokers`]: a nameserver and broker nodes running the real node runner;
//! - [`oracle`]: the Raft-level checks over a broker cluster (one leader per term, leader
//!   completeness, log matching, durability of acknowledged sends);
//! - [`log_tap`]: the retention oracle (which messages retention deleted, and whether they
//!   were old enough).

pub mod brokers;
pub mod log_tap;
pub mod nodes;
pub mod oracle;
pub mod raft;

use nodes::Nodes;

/// A cluster the nemesis can hurt: its machines, and which of them it counts as the leader.
///
/// Kills and restarts go through the cluster rather than straight to [`Nodes`] so a harness
/// can forget what it cached about a node's previous incarnation.
pub trait Cluster {
    /// The cluster's machines.
    fn nodes(&self) -> &Nodes;

    /// The cluster's machines, to kill and restart.
    fn nodes_mut(&mut self) -> &mut Nodes;

    /// The node the nemesis aims "leader" faults at, if any node leads.
    fn leader(&self) -> Option<usize>;

    /// Kills node `i`'s process.
    fn kill(&mut self, i: usize) {
        self.nodes_mut().kill(i);
    }

    /// Restarts node `i`; with `power_loss` its disk first loses what was not synced.
    fn restart(&mut self, i: usize, power_loss: bool) {
        self.nodes_mut().restart(i, power_loss);
    }
}
