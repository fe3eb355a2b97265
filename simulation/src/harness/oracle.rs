//! The Raft oracle over a broker cluster: properties of the replicas themselves, checked beside
//! the clients' history. While the cluster runs, a sampler records every replica's role, term
//! and commit index ([`Oracle`]: at most one leader per term, leader completeness), and every
//! 16th acknowledged send is looked up on the disks ([`Durability`]: acknowledged means durable
//! on a majority). After the run, [`compare_logs`] checks that the replicas' committed logs
//! agree (log matching, state-machine safety; Raft paper §5.3–5.4).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::hash::Hash;
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use raft_store::group::GroupMetrics;
use raft_store::group::Role;

use super::brokers::BrokerCluster;
use crate::msg_checker::Anomaly;

/// Samples every replica's role and term, for "at most one leader per term" and leader
/// completeness.
#[derive(Default)]
pub struct Oracle {
    /// Nodes seen leading, per (group, term).
    leaders: BTreeMap<(u64, u64), BTreeSet<usize>>,
    /// Highest commit index seen per (group, term of the replica that reported it).
    committed: BTreeMap<(u64, u64), u64>,
    /// Leaders already checked for completeness, per (group, term).
    checked: BTreeSet<(u64, u64)>,
    /// Leader-completeness violations.
    incomplete: Vec<String>,
}

impl Oracle {
    /// Records one replica's metrics. A leader of term T must hold every index reported as
    /// committed by a replica in a term below T (leader completeness): such an index was
    /// committed in that lower term.
    pub fn sample(&mut self, g: u64, node: usize, m: &GroupMetrics) {
        let term = m.term.0;
        if let Some(c) = m.committed {
            let e = self.committed.entry((g, term)).or_default();
            *e = (*e).max(c.0);
        }
        if m.role != Role::Leader {
            return;
        }
        self.leaders.entry((g, term)).or_default().insert(node);
        if self.checked.insert((g, term)) {
            let floor = self
                .committed
                .range((g, 0)..(g, term))
                .map(|(_, c)| *c)
                .max()
                .unwrap_or(0);
            let last = m.last_log.map_or(0, |l| l.0);
            if last < floor {
                self.incomplete.push(format!(
                    "group {g}: n{} leads term {term} with last log {last}, but index {floor} was committed in an earlier term",
                    node + 1
                ));
            }
        }
    }

    /// What the samples violated: `raft-leader-incomplete` and `raft-two-leaders`.
    pub fn anomalies(&self) -> Vec<Anomaly> {
        let mut out: Vec<Anomaly> = self
            .incomplete
            .iter()
            .map(|v| Anomaly {
                kind: "raft-leader-incomplete",
                detail: v.clone(),
            })
            .collect();
        for ((g, term), nodes) in &self.leaders {
            if nodes.len() > 1 {
                out.push(Anomaly {
                    kind: "raft-two-leaders",
                    detail: format!("group {g} term {term}: leaders {nodes:?}"),
                });
            }
        }
        out
    }
}

/// The task that feeds an [`Oracle`] every 10 ms, until [`Sampler::stop`].
pub struct Sampler {
    oracle: Arc<Mutex<Oracle>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling every replica of every group of `cluster`.
    pub fn start(cluster: Arc<tokio::sync::Mutex<BrokerCluster>>) -> Sampler {
        let oracle = Arc::new(Mutex::new(Oracle::default()));
        let running = Arc::new(AtomicBool::new(true));
        let (o, r) = (oracle.clone(), running.clone());
        let task = tokio::spawn(async move {
            while r.load(Ordering::SeqCst) {
                {
                    let c = cluster.lock().await;
                    for i in 0..c.nodes.len() {
                        let Some(core) = c.core(i) else { continue };
                        for g in 1..=c.groups() {
                            if let Ok(h) = core.group(g) {
                                o.lock().unwrap().sample(g, i, &h.replica.metrics());
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Sampler {
            oracle,
            running,
            task,
        }
    }

    /// Stops sampling and returns what the samples violated ([`Oracle::anomalies`]).
    pub async fn stop(self) -> Vec<Anomaly> {
        self.running.store(false, Ordering::SeqCst);
        let _ = self.task.await;
        self.oracle.lock().unwrap().anomalies()
    }
}

/// Every 16th acknowledged send, the oracle looks for it in what each node's disk would keep
/// after a power loss right now: it must be on a majority.
pub struct Durability {
    disks: Vec<raft_store::disk::SimDisk>,
    violations: Mutex<Vec<String>>,
}

impl Durability {
    /// Watches the disks of every node of `cluster`.
    pub fn new(cluster: &BrokerCluster) -> Durability {
        Durability {
            disks: (0..cluster.nodes.len())
                .map(|i| cluster.nodes.disk(i).clone())
                .collect(),
            violations: Mutex::new(Vec::new()),
        }
    }

    /// Checks that the message `id`, just acknowledged, would survive a power loss of every
    /// node now (the durable tail of the last 8 MiB of each disk holds it on a majority).
    pub fn check(&self, id: &str) {
        let on = self
            .disks
            .iter()
            .filter(|d| d.durable_tail_contains(id.as_bytes(), 8 << 20))
            .count();
        if on * 2 <= self.disks.len() {
            self.violations.lock().unwrap().push(format!(
                "{id} acknowledged while durable on {on} of {} disks",
                self.disks.len()
            ));
        }
    }

    /// The violations so far, as `raft-ack-not-durable` anomalies.
    pub fn anomalies(&self) -> Vec<Anomaly> {
        self.violations
            .lock()
            .unwrap()
            .iter()
            .map(|v| Anomaly {
                kind: "raft-ack-not-durable",
                detail: v.clone(),
            })
            .collect()
    }
}

/// One replica's log, as far as it is committed and still held.
struct ReplicaLog {
    node: usize,
    /// The highest index both committed and written here.
    durable: u64,
    /// The highest index compacted away.
    purged: u64,
    log: raft_store::log::LogStore,
}

/// The Raft oracle after the run: every replica's committed log is identical up to the
/// smallest commit index (log matching, state-machine safety).
pub fn compare_logs(c: &BrokerCluster) -> Vec<Anomaly> {
    let mut out = Vec::new();
    for g in 1..=c.groups() {
        let logs = replica_logs(c, g);
        let Some(upto) = logs.iter().map(|l| l.durable).min() else {
            continue;
        };
        let from = logs.iter().map(|l| l.purged).max().unwrap_or(0) + 1;
        if from > upto {
            continue;
        }
        let mut reference: Option<(usize, Vec<u64>)> = None;
        for l in &logs {
            let hashes: Vec<u64> = match l.log.read(from..=upto) {
                Ok(es) => es.iter().map(|e| hash_of(&format!("{e:?}"))).collect(),
                Err(e) => {
                    out.push(Anomaly {
                        kind: "raft-log-mismatch",
                        detail: format!(
                            "group {g} n{}: cannot read {from}..={upto}: {e}",
                            l.node + 1
                        ),
                    });
                    continue;
                }
            };
            let Some((r, ref_hashes)) = &reference else {
                reference = Some((l.node, hashes));
                continue;
            };
            if let Some(k) = (0..ref_hashes.len().max(hashes.len()))
                .find(|k| ref_hashes.get(*k) != hashes.get(*k))
            {
                out.push(Anomaly {
                    kind: "raft-log-mismatch",
                    detail: format!(
                        "group {g}: n{} and n{} differ at index {}",
                        r + 1,
                        l.node + 1,
                        from + k as u64
                    ),
                });
            }
        }
    }
    out
}

/// The logs of group `g` on every node that is up.
fn replica_logs(c: &BrokerCluster, g: u64) -> Vec<ReplicaLog> {
    let mut logs = Vec::new();
    for i in 0..c.nodes.len() {
        let Some(core) = c.core(i) else { continue };
        let Ok(h) = core.group(g) else { continue };
        let m = h.replica.metrics();
        let log = h.replica.group().log().clone();
        let purged = log.state().0.map_or(0, |p| p.index);
        let durable = m
            .committed
            .map_or(0, |x| x.0)
            .min(m.last_log.map_or(0, |x| x.0));
        logs.push(ReplicaLog {
            node: i,
            durable,
            purged,
            log,
        });
    }
    logs
}

/// A fixed-key hash (the same in every run: `DefaultHasher::new` is not randomly seeded).
fn hash_of(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}
