//! The nemesis: every few seconds it picks one of the enabled fault kinds, applies it for a
//! few seconds and heals it, recording each interval as a [`Fault`] of the history. Choices
//! come from the run's seed; targets named "leader" are resolved at run time (so a replay
//! repeats the schedule, not necessarily the victims).
//!
//! | kind | shapes / targets |
//! |---|---|
//! | `partition` | isolate one node, isolate the leader, random halves, the leader deaf (one-way in), the leader mute (one-way out); with 5 nodes also a majorities ring and a bridge |
//! | `kill` | SIGKILL one node, the leader, a minority, or every node (coordinated crash); restart at heal |
//! | `power-loss` | as `kill`, on nodes that keep unsynced writes in memory (`--test-lossy-disk`), so each kill loses what was not fsynced |
//! | `pause` | SIGSTOP one node, the leader or a minority; SIGCONT at heal |
//! | `clock` | step the wall clock of one node, a minority or every node by ±1…60 s (libfaketime); reset at heal |
//! | `packet` | drop 5–30% of the packets one node or every node receives from the others |
//! | `disk-full` | fill the data disk (a per-node tmpfs) of one node, the leader, a minority or every node below the brokers' free-space floor; delete the filler at heal (`disk.rs`) |

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::bail;
use checker::jsonl::Fault;
use rand::RngExt;
use rand::rngs::SmallRng;
use serde_json::json;

use crate::db;
use crate::db::Db;
use crate::net::Grudge;
use crate::net::Net;

/// A fault kind the nemesis may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Network partitions.
    Partition,
    /// SIGKILL and restart.
    Kill,
    /// SIGSTOP and SIGCONT.
    Pause,
    /// Wall-clock steps.
    Clock,
    /// Packet loss.
    Packet,
    /// SIGKILL of nodes whose unsynced writes die with them.
    PowerLoss,
    /// A node's disk (or every node's) filled below the brokers' free-space floor.
    DiskFull,
}

impl Kind {
    /// Parses a comma-separated list (`none` is the empty list).
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Kind>> {
        let mut out = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            out.push(match name {
                "none" => continue,
                "partition" => Kind::Partition,
                "kill" => Kind::Kill,
                "pause" => Kind::Pause,
                "clock" => Kind::Clock,
                "packet" => Kind::Packet,
                "power-loss" => Kind::PowerLoss,
                "disk-full" => Kind::DiskFull,
                _ => bail!(
                    "unknown nemesis {name:?} (known: none, partition, kill, pause, clock, packet, power-loss, disk-full)"
                ),
            });
        }
        Ok(out)
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Partition => "partition",
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Clock => "clock",
            Kind::Packet => "packet",
            Kind::PowerLoss => "power-loss",
            Kind::DiskFull => "disk-full",
        }
    }
}

/// What a fault needs undone at heal time.
enum Undo {
    Network,
    Restart(Vec<usize>),
    Resume(Vec<usize>),
    Clock(Vec<usize>),
    Disk(Vec<usize>),
}

/// The nemesis of one run.
pub struct Nemesis<'a> {
    /// The enabled kinds.
    pub kinds: Vec<Kind>,
    /// Quiet time between faults (ms range).
    pub quiet_ms: (u64, u64),
    /// How long a fault stays (ms range).
    pub hold_ms: (u64, u64),
    /// The run's network.
    pub net: &'a Net,
    /// The run's processes.
    pub db: &'a Mutex<Db>,
    /// Nodes.
    pub nodes: usize,
    /// Seeded choices.
    pub rng: SmallRng,
}

fn pick(rng: &mut SmallRng, nodes: usize, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (1..=nodes).collect();
    for i in (1..all.len()).rev() {
        all.swap(i, rng.random_range(0..=i));
    }
    all.truncate(k);
    all.sort();
    all
}

/// Every node drops packets from every node outside its component.
fn grudge_of(components: &[Vec<usize>], nodes: usize) -> Grudge {
    let mut g = Grudge::new();
    for to in 1..=nodes {
        let mine: BTreeSet<usize> = components
            .iter()
            .filter(|c| c.contains(&to))
            .flatten()
            .copied()
            .collect();
        let drop: BTreeSet<usize> = (1..=nodes).filter(|n| !mine.contains(n)).collect();
        if !drop.is_empty() {
            g.insert(to, drop);
        }
    }
    g
}

/// Majorities ring over `order` (5 nodes): everyone hears only itself and its two ring
/// neighbours, so every node sees a majority but no two nodes see the same one.
fn ring(order: &[usize]) -> Grudge {
    let n = order.len();
    let mut g = Grudge::new();
    for (i, to) in order.iter().enumerate() {
        let hears = [order[(i + n - 1) % n], *to, order[(i + 1) % n]];
        g.insert(
            *to,
            order
                .iter()
                .copied()
                .filter(|x| !hears.contains(x))
                .collect(),
        );
    }
    g
}

/// Bridge over `order` (5 nodes): two pairs that cannot hear each other, and one node (the
/// middle of `order`) that both pairs hear.
fn bridge(order: &[usize]) -> Grudge {
    let mid = order.len() / 2;
    let mut left = order[..mid].to_vec();
    left.push(order[mid]);
    let mut right = order[mid + 1..].to_vec();
    right.push(order[mid]);
    grudge_of(&[left, right], order.len())
}

impl Nemesis<'_> {
    async fn target(&mut self, leader_ok: bool) -> (String, Vec<usize>) {
        let n = self.nodes;
        let minority = (n - 1) / 2;
        match self.rng.random_range(0..if leader_ok { 3 } else { 2 }) {
            0 => ("one".into(), pick(&mut self.rng, n, 1)),
            1 => ("minority".into(), pick(&mut self.rng, n, minority.max(1))),
            _ => match db::leader_of(n, 1).await {
                Some(l) => ("leader".into(), vec![l]),
                None => ("one".into(), pick(&mut self.rng, n, 1)),
            },
        }
    }

    async fn partition(&mut self) -> anyhow::Result<(serde_json::Value, Undo)> {
        let n = self.nodes;
        let shapes = if n >= 5 { 7 } else { 5 };
        let leader = db::leader_of(n, 1).await.unwrap_or(1);
        let others = |x: usize| (1..=n).filter(move |i| *i != x).collect::<Vec<_>>();
        let (shape, grudge): (&str, Grudge) = match self.rng.random_range(0..shapes) {
            0 => {
                let x = pick(&mut self.rng, n, 1)[0];
                ("isolate-one", grudge_of(&[vec![x], others(x)], n))
            }
            1 => (
                "isolate-leader",
                grudge_of(&[vec![leader], others(leader)], n),
            ),
            2 => {
                let small = pick(&mut self.rng, n, (n - 1) / 2);
                let big: Vec<usize> = (1..=n).filter(|i| !small.contains(i)).collect();
                ("halves", grudge_of(&[small, big], n))
            }
            3 => (
                "leader-deaf",
                [(leader, others(leader).into_iter().collect())].into(),
            ),
            4 => (
                "leader-mute",
                others(leader)
                    .into_iter()
                    .map(|o| (o, [leader].into()))
                    .collect(),
            ),
            5 => ("majorities-ring", ring(&pick(&mut self.rng, n, n))),
            _ => ("bridge", bridge(&pick(&mut self.rng, n, n))),
        };
        self.net.partition(&grudge)?;
        let detail = json!({ "shape": shape, "grudge": grudge });
        Ok((detail, Undo::Network))
    }

    async fn apply(&mut self, kind: Kind) -> anyhow::Result<(serde_json::Value, Undo)> {
        match kind {
            Kind::Partition => self.partition().await,
            Kind::Kill | Kind::PowerLoss => {
                let (how, mut targets) = if self.rng.random_range(0..5) == 0 {
                    ("all".to_string(), (1..=self.nodes).collect())
                } else {
                    self.target(true).await
                };
                targets.sort();
                let mut db = self.db.lock().unwrap();
                for t in &targets {
                    db.kill(*t);
                }
                Ok((
                    json!({"targets": targets, "how": how}),
                    Undo::Restart(targets),
                ))
            }
            Kind::Pause => {
                let (how, targets) = self.target(true).await;
                let mut db = self.db.lock().unwrap();
                for t in &targets {
                    db.pause(*t);
                }
                Ok((
                    json!({"targets": targets, "how": how}),
                    Undo::Resume(targets),
                ))
            }
            Kind::Clock => {
                let (how, targets) = self.target(false).await;
                let mut offsets = Vec::new();
                let db = self.db.lock().unwrap();
                for t in &targets {
                    let s = self.rng.random_range(1.0..60.0)
                        * if self.rng.random() { 1.0 } else { -1.0 };
                    db.set_clock(*t, s)?;
                    offsets.push((t, (s * 1000.0).round() / 1000.0));
                }
                Ok((
                    json!({"offsets_s": offsets, "how": how}),
                    Undo::Clock(targets),
                ))
            }
            Kind::Packet => {
                let percent = self.rng.random_range(5..=30u32);
                let targets = if self.rng.random() {
                    (1..=self.nodes).collect()
                } else {
                    pick(&mut self.rng, self.nodes, 1)
                };
                for t in &targets {
                    self.net.lossy(*t, percent)?;
                }
                Ok((
                    json!({"targets": targets, "loss_percent": percent}),
                    Undo::Network,
                ))
            }
            Kind::DiskFull => {
                let (how, targets) = if self.rng.random_range(0..3) == 0 {
                    ("all".to_string(), (1..=self.nodes).collect())
                } else {
                    self.target(true).await
                };
                let db = self.db.lock().unwrap();
                let mut left = Vec::new();
                for t in &targets {
                    left.push((t, db.fill_disk(*t)?));
                }
                Ok((
                    json!({"targets": targets, "how": how, "free_mib": left}),
                    Undo::Disk(targets),
                ))
            }
        }
    }

    fn undo(&mut self, undo: Undo) -> anyhow::Result<()> {
        match undo {
            Undo::Network => self.net.heal(),
            Undo::Restart(nodes) => {
                let mut db = self.db.lock().unwrap();
                for i in nodes {
                    db.start_node(self.net, i)?;
                }
                Ok(())
            }
            Undo::Resume(nodes) => {
                let mut db = self.db.lock().unwrap();
                for i in nodes {
                    db.resume(i);
                }
                Ok(())
            }
            Undo::Clock(nodes) => {
                let db = self.db.lock().unwrap();
                for i in nodes {
                    db.set_clock(i, 0.0)?;
                }
                Ok(())
            }
            Undo::Disk(nodes) => {
                let db = self.db.lock().unwrap();
                for i in nodes {
                    db.free_disk(i);
                }
                Ok(())
            }
        }
    }

    /// Faults until `now() >= until_us`, recording each into `faults`. A fault that cannot be
    /// applied (a tool failed) ends the run with an error: a nemesis that silently does
    /// nothing would make a pass meaningless.
    pub async fn run(
        &mut self,
        now: impl Fn() -> u64,
        until_us: u64,
        faults: &Mutex<Vec<Fault>>,
    ) -> anyhow::Result<()> {
        while now() < until_us && !self.kinds.is_empty() {
            let quiet = self.rng.random_range(self.quiet_ms.0..=self.quiet_ms.1);
            tokio::time::sleep(Duration::from_millis(quiet)).await;
            if now() >= until_us {
                break;
            }
            let kind = self.kinds[self.rng.random_range(0..self.kinds.len())];
            let start_us = now();
            let (detail, undo) = self.apply(kind).await?;
            let i = {
                let mut f = faults.lock().unwrap();
                f.push(Fault {
                    name: kind.name().into(),
                    detail,
                    start_us,
                    end_us: None,
                });
                f.len() - 1
            };
            let hold = self.rng.random_range(self.hold_ms.0..=self.hold_ms.1);
            tokio::time::sleep(Duration::from_millis(hold)).await;
            self.undo(undo)?;
            faults.lock().unwrap()[i].end_us = Some(now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[usize]) -> BTreeSet<usize> {
        v.iter().copied().collect()
    }

    #[test]
    fn components_cut_everything_between_them() {
        let g = grudge_of(&[vec![1], vec![2, 3]], 3);
        assert_eq!(g[&1], set(&[2, 3]));
        assert_eq!(g[&2], set(&[1]));
        assert_eq!(g[&3], set(&[1]));
        // One component: nothing to cut.
        assert!(grudge_of(&[vec![1, 2, 3]], 3).is_empty());
    }

    #[test]
    fn the_ring_gives_every_node_a_different_majority() {
        let g = ring(&[3, 1, 4, 5, 2]);
        let mut seen = BTreeSet::new();
        for node in 1..=5 {
            let hears: BTreeSet<usize> = (1..=5).filter(|x| !g[&node].contains(x)).collect();
            assert_eq!(hears.len(), 3, "node {node} hears {hears:?}");
            assert!(hears.contains(&node));
            seen.insert(hears);
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(g[&3], set(&[4, 5]));
    }

    #[test]
    fn the_bridge_node_is_heard_by_both_sides() {
        let g = bridge(&[1, 2, 3, 4, 5]);
        assert!(!g.contains_key(&3), "the bridge hears everyone");
        assert_eq!(g[&1], set(&[4, 5]));
        assert_eq!(g[&5], set(&[1, 2]));
    }

    #[test]
    fn nemesis_names_parse_and_unknown_ones_are_named() {
        assert_eq!(
            Kind::parse_list("partition, kill,power-loss").unwrap(),
            vec![Kind::Partition, Kind::Kill, Kind::PowerLoss]
        );
        assert!(Kind::parse_list("none").unwrap().is_empty());
        let e = Kind::parse_list("partition,flood").unwrap_err().to_string();
        assert!(e.contains("\"flood\"") && e.contains("power-loss"), "{e}");
    }
}
