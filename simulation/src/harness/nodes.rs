//! Simulated server machines with their own disks: boot, kill, restart (as a process crash or
//! a power loss), isolate and heal, clog single links, pause. Every cluster harness is built on
//! [`Nodes`], and the nemesis drives it through [`super::Cluster`].
//!
//! Node `i` gets IP 10.0.0.`i+1` and a [`SimDisk`] owned here, outside the node, so it
//! survives kills. A kill drops the node's tasks; the page cache (unsynced writes) survives it
//! unless the restart is a power loss, which crashes the disk first.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::runtime::NodeHandle;
use raft_store::disk::SimDisk;
use raft_store::disk::SimDiskFaults;

struct Node {
    handle: NodeHandle,
    disk: SimDisk,
    power_loss_on_boot: Arc<AtomicBool>,
    alive: bool,
}

/// A set of simulated nodes.
pub struct Nodes {
    nodes: Vec<Node>,
}

/// Removes and returns the startup errors of node `i` (those starting "n<i+1> ") from
/// `errors`: for a harness that expected them.
pub fn take_errors_of(errors: &std::sync::Mutex<Vec<String>>, i: usize) -> Vec<String> {
    let prefix = format!("n{} ", i + 1);
    let mut errs = errors.lock().unwrap();
    let (mine, rest): (Vec<String>, Vec<String>) =
        errs.drain(..).partition(|e| e.starts_with(&prefix));
    *errs = rest;
    mine
}

/// The IP of node `i`.
pub fn ip(i: usize) -> String {
    format!("10.0.0.{}", i + 1)
}

impl Nodes {
    /// Creates and boots `n` nodes; `boot(i, disk)` is each node's main task, run again on
    /// every restart.
    pub fn new<F, Fut>(n: usize, faults: SimDiskFaults, boot: F) -> Self
    where
        F: Fn(usize, SimDisk) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let handle = Handle::current();
        let nodes = (0..n)
            .map(|i| {
                let disk = SimDisk::new(raft_store::rt::random_u64());
                disk.set_faults(faults.clone());
                let power = Arc::new(AtomicBool::new(false));
                let (d, p, b) = (disk.clone(), power.clone(), boot.clone());
                let handle = handle
                    .create_node()
                    .name(format!("n{}", i + 1))
                    .ip(ip(i).parse().unwrap())
                    .init(move || {
                        let (disk, power, boot) = (d.clone(), p.clone(), b.clone());
                        async move {
                            if power.swap(false, Ordering::SeqCst) {
                                disk.crash();
                            }
                            boot(i, disk).await;
                        }
                    })
                    .build();
                Node {
                    handle,
                    disk,
                    power_loss_on_boot: power,
                    alive: true,
                }
            })
            .collect();
        Nodes { nodes }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The simulator's id of node `i` (stable across restarts).
    pub fn node_id(&self, i: usize) -> madsim::task::NodeId {
        self.nodes[i].handle.id()
    }

    /// Kills node `i`'s process.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.alive {
            Handle::current().kill(n.handle.id());
            n.alive = false;
        }
    }

    /// Restarts node `i`; with `power_loss` its disk first loses what was not synced.
    pub fn restart(&mut self, i: usize, power_loss: bool) {
        let n = &mut self.nodes[i];
        if !n.alive {
            n.power_loss_on_boot.store(power_loss, Ordering::SeqCst);
            Handle::current().restart(n.handle.id());
            n.alive = true;
        }
    }

    /// Cuts node `i` off the network (both directions).
    pub fn isolate(&self, i: usize) {
        NetSim::current().clog_node(self.nodes[i].handle.id());
    }

    /// Reconnects node `i`.
    pub fn heal(&self, i: usize) {
        NetSim::current().unclog_node(self.nodes[i].handle.id());
    }

    /// Stops delivering node `i`'s outgoing traffic to node `j` (one way).
    pub fn clog_link(&self, i: usize, j: usize) {
        NetSim::current().clog_link(self.nodes[i].handle.id(), self.nodes[j].handle.id());
    }

    /// Undoes every clog: links and nodes.
    pub fn unclog_all(&self) {
        let net = NetSim::current();
        for a in &self.nodes {
            net.unclog_node(a.handle.id());
            for b in &self.nodes {
                net.unclog_link(a.handle.id(), b.handle.id());
            }
        }
    }

    /// Freezes node `i` (its tasks stop running; its timers and peers do not).
    pub fn pause(&self, i: usize) {
        Handle::current().pause(self.nodes[i].handle.id());
    }

    /// Unfreezes node `i`.
    pub fn resume(&self, i: usize) {
        Handle::current().resume(self.nodes[i].handle.id());
    }

    /// Whether node `i`'s process is up.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    /// Node `i`'s disk.
    pub fn disk(&self, i: usize) -> &SimDisk {
        &self.nodes[i].disk
    }

    /// A handle to spawn on node `i`'s current incarnation (a handle taken before a restart
    /// spawns onto the dead one).
    pub fn handle(&self, i: usize) -> Option<NodeHandle> {
        Handle::current().get_node(self.nodes[i].handle.id())
    }

    /// Unsynced writes lost in crashes, over all disks.
    pub fn lost_writes(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.disk.stats().crash_lost_writes)
            .sum()
    }
}
