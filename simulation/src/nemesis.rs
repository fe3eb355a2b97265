//! The nemesis: the one fault loop every scenario runs. It waits a random gap, draws a fault
//! class from the scenario's [`Plan`], aims it (at the leader, any node, either, or a
//! follower), applies it for a random hold and undoes it, then logs what it did; the log goes
//! into every failure message.
//!
//! The classes the scenarios share live here: kills (process crash or power loss), power loss of
//! every node at once, isolation, one-way cuts, swizzle-clog, pauses and a lossy network. A
//! scenario's own classes (disk errors, bit flips, clock steps, leadership transfers, ...) are
//! [`Fault::Own`]: the nemesis draws and aims them like the others, and [`Nemesis::apply`]
//! hands them back for the scenario to apply. Faults run one at a time, and each shared one is
//! undone before the next is drawn, so the log says which fault was live when something broke.
//! A scenario's own fault may leave lasting damage (a stepped clock, a node left down); a node
//! the scenario [spared](Nemesis::spare) is no victim from then on, and stays down.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use madsim::net::NetSim;
use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use crate::harness::Cluster;

/// Which node a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// The leader, or any node while none leads.
    Leader,
    /// Any node.
    Any,
    /// The leader half the time, any node otherwise: a swarm draws each class once, so both
    /// leader and follower faults must come out of it.
    LeaderOrAny,
    /// Any node but the leader; the fault is skipped while none leads.
    Follower,
}

/// The shape of a network cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The node is cut off both ways.
    Isolate,
    /// The node's traffic to every other node is dropped; it still hears them.
    Outgoing,
    /// Every other node's traffic to the node is dropped; it still reaches them.
    Incoming,
    /// Swizzle-clog: a majority is cut off one node at a time, then reconnected in reverse
    /// order, so leadership moves around while quorums shift.
    Swizzle,
}

/// A fault class. `K` is the scenario's own classes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault<K> {
    /// Kill a node and restart it after the hold, as a process crash or a power loss (a coin
    /// flip).
    Kill(Who),
    /// Kill every node at once and restart them after the hold, their unsynced writes lost.
    PowerLossAll,
    /// Cut a node off the network for the hold.
    Isolate(Who),
    /// A [`Cut`] drawn per fault (isolate, outgoing, incoming, swizzle) around the node.
    Partition(Who),
    /// Freeze a node for the hold (its peers' timers run on).
    Pause(Who),
    /// Drop up to 5 % of packets and delay each by up to 50 ms for the hold.
    LossyNet,
    /// One of the scenario's own classes, aimed as `Who` says.
    Own(K, Who),
}

impl<K: Copy> Fault<K> {
    /// Whom the fault aims at; `None` for faults that hit everyone.
    fn who(&self) -> Option<Who> {
        match *self {
            Fault::Kill(w)
            | Fault::Isolate(w)
            | Fault::Partition(w)
            | Fault::Pause(w)
            | Fault::Own(_, w) => Some(w),
            Fault::PowerLossAll | Fault::LossyNet => None,
        }
    }
}

/// When the chaos ends.
#[derive(Debug, Clone)]
pub enum Until {
    /// After a number of faults drawn from the range.
    Rounds(Range<u32>),
    /// At a point in (virtual) time.
    Deadline(Instant),
}

/// What a scenario's nemesis may do, and how often.
#[derive(Debug, Clone)]
pub struct Plan<K> {
    /// The classes to draw from, uniformly; may be empty (then nothing happens).
    pub faults: Vec<Fault<K>>,
    /// The quiet time before each fault, in ms.
    pub gap_ms: Range<u64>,
    /// How long a fault lasts before it is undone, in ms.
    pub hold_ms: Range<u64>,
    /// When to stop.
    pub until: Until,
}

/// A drawn fault, ready for [`Nemesis::apply`].
#[derive(Debug)]
pub struct Step<K> {
    fault: Fault<K>,
    /// Set for every fault that aims at a node.
    victim: Option<usize>,
    hold: Duration,
}

/// One of the scenario's own faults, handed back by [`Nemesis::apply`].
#[derive(Debug)]
pub struct Own<K> {
    /// The class.
    pub kind: K,
    /// The node it aims at.
    pub victim: usize,
    /// How long it should last, if it lasts.
    pub hold: Duration,
}

/// The fault loop over a cluster `C`, with scenario-specific classes `K`.
pub struct Nemesis<C, K> {
    cluster: Arc<tokio::sync::Mutex<C>>,
    /// Every draw of the loop, and of the scenario's own faults ([`Nemesis::rng`]).
    rng: SmallRng,
    plan: Plan<K>,
    /// Faults left, under [`Until::Rounds`].
    rounds_left: Option<u32>,
    /// Nodes left alone (down on purpose).
    spared: BTreeSet<usize>,
    log: Vec<String>,
}

impl<C: Cluster, K: Copy + Debug> Nemesis<C, K> {
    /// A nemesis over `cluster` drawing from `rng`.
    pub fn new(cluster: Arc<tokio::sync::Mutex<C>>, mut rng: SmallRng, plan: Plan<K>) -> Self {
        let rounds_left = match &plan.until {
            Until::Rounds(r) => Some(rng.random_range(r.clone())),
            Until::Deadline(_) => None,
        };
        Nemesis {
            cluster,
            rng,
            plan,
            rounds_left,
            spared: BTreeSet::new(),
            log: Vec::new(),
        }
    }

    /// The nemesis' random stream, for the scenario's own faults.
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// What happened so far, one line per fault.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Adds a line to the log.
    pub fn note(&mut self, line: String) {
        self.log.push(line);
    }

    /// Leaves node `i` alone from now on: it is never a victim, and neither a power loss of
    /// every node nor [`Nemesis::heal`] restarts it.
    pub fn spare(&mut self, i: usize) {
        self.spared.insert(i);
    }

    /// Waits out a gap and draws the next fault; `None` once the plan is over. A fault aimed
    /// at a spared node is dropped; one aimed at a follower while none leads is logged as
    /// skipped.
    pub async fn next(&mut self) -> Option<Step<K>> {
        loop {
            if !self.more() {
                return None;
            }
            let gap = self.rng.random_range(self.plan.gap_ms.clone());
            tokio::time::sleep(Duration::from_millis(gap)).await;
            if self.plan.faults.is_empty() {
                continue;
            }
            let fault = self.plan.faults[self.rng.random_range(0..self.plan.faults.len())];
            let hold = Duration::from_millis(self.rng.random_range(self.plan.hold_ms.clone()));
            let victim = match fault.who() {
                None => None,
                Some(who) => match self.aim(who).await {
                    Some(v) if self.spared.contains(&v) => continue,
                    Some(v) => Some(v),
                    None => {
                        self.note(format!("{fault:?} skipped: no leader"));
                        continue;
                    }
                },
            };
            return Some(Step {
                fault,
                victim,
                hold,
            });
        }
    }

    /// Applies a shared fault for its hold and undoes it, or hands back one of the scenario's
    /// own.
    pub async fn apply(&mut self, step: Step<K>) -> Option<Own<K>> {
        let Step {
            fault,
            victim,
            hold,
        } = step;
        match (fault, victim) {
            (Fault::PowerLossAll, _) => self.power_loss_all(hold).await,
            (Fault::LossyNet, _) => self.lossy_net(hold).await,
            (Fault::Kill(_), Some(v)) => self.kill(fault, v, hold).await,
            (Fault::Isolate(_), Some(v)) => self.cut(Cut::Isolate, v, hold).await,
            (Fault::Partition(_), Some(v)) => {
                let cut = [Cut::Isolate, Cut::Outgoing, Cut::Incoming, Cut::Swizzle]
                    [self.rng.random_range(0..4)];
                self.cut(cut, v, hold).await;
            }
            (Fault::Pause(_), Some(v)) => self.pause(v, hold).await,
            (Fault::Own(kind, _), Some(victim)) => return Some(Own { kind, victim, hold }),
            (_, None) => unreachable!("{fault:?} aims at a node, so it has a victim"),
        }
        None
    }

    /// Undoes whatever is left at the end of the chaos: unclogs every link, and resumes and
    /// restarts (if down) every node but the spared ones.
    pub async fn heal(&mut self) {
        let mut c = self.cluster.lock().await;
        c.nodes().unclog_all();
        for i in (0..c.nodes().len()).filter(|i| !self.spared.contains(i)) {
            c.nodes().resume(i);
            c.restart(i, false);
        }
    }

    /// True if the plan allows another fault (and counts it).
    fn more(&mut self) -> bool {
        match (&self.plan.until, &mut self.rounds_left) {
            (Until::Deadline(end), _) => Instant::now() < *end,
            (Until::Rounds(_), Some(0)) => false,
            (Until::Rounds(_), Some(left)) => {
                *left -= 1;
                true
            }
            (Until::Rounds(_), None) => unreachable!("rounds are drawn in Nemesis::new"),
        }
    }

    /// Picks the node `who` names; `None` for a follower while no node leads.
    async fn aim(&mut self, who: Who) -> Option<usize> {
        let (leader, n) = {
            let c = self.cluster.lock().await;
            (c.leader(), c.nodes().len())
        };
        let rng = &mut self.rng;
        match who {
            Who::Leader => Some(leader.unwrap_or_else(|| rng.random_range(0..n))),
            Who::Any => Some(rng.random_range(0..n)),
            Who::LeaderOrAny => Some(match leader {
                Some(l) if rng.random::<bool>() => l,
                _ => rng.random_range(0..n),
            }),
            Who::Follower => leader.map(|l| (l + 1 + rng.random_range(0..n - 1)) % n),
        }
    }

    async fn kill(&mut self, fault: Fault<K>, i: usize, hold: Duration) {
        let power_loss = self.rng.random::<bool>();
        self.cluster.lock().await.kill(i);
        tokio::time::sleep(hold).await;
        self.cluster.lock().await.restart(i, power_loss);
        self.note(format!(
            "{fault:?} n{} power_loss={power_loss} for {hold:?}",
            i + 1
        ));
    }

    async fn power_loss_all(&mut self, hold: Duration) {
        let n = {
            let mut c = self.cluster.lock().await;
            let n = c.nodes().len();
            for i in 0..n {
                c.kill(i);
            }
            n
        };
        tokio::time::sleep(hold).await;
        let mut c = self.cluster.lock().await;
        for i in (0..n).filter(|i| !self.spared.contains(i)) {
            c.restart(i, true);
        }
        drop(c);
        self.note(format!("power loss of all for {hold:?}"));
    }

    async fn cut(&mut self, cut: Cut, v: usize, hold: Duration) {
        if cut == Cut::Swizzle {
            return self.swizzle().await;
        }
        {
            let c = self.cluster.lock().await;
            let nodes = c.nodes();
            let others = (0..nodes.len()).filter(|j| *j != v);
            match cut {
                Cut::Isolate => nodes.isolate(v),
                Cut::Outgoing => others.for_each(|j| nodes.clog_link(v, j)),
                Cut::Incoming => others.for_each(|j| nodes.clog_link(j, v)),
                Cut::Swizzle => unreachable!("handled above"),
            }
        }
        tokio::time::sleep(hold).await;
        self.cluster.lock().await.nodes().unclog_all();
        self.note(format!("cut {cut:?} around n{} for {hold:?}", v + 1));
    }

    async fn swizzle(&mut self) {
        let n = self.cluster.lock().await.nodes().len();
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, self.rng.random_range(0..=i));
        }
        let cut = n / 2 + 1;
        for i in order.iter().take(cut) {
            self.cluster.lock().await.nodes().isolate(*i);
            let pause = self.rng.random_range(50..400);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        for i in order.iter().take(cut).rev() {
            self.cluster.lock().await.nodes().heal(*i);
            let pause = self.rng.random_range(50..400);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        self.note(format!("swizzle {order:?}"));
    }

    async fn pause(&mut self, v: usize, hold: Duration) {
        self.cluster.lock().await.nodes().pause(v);
        tokio::time::sleep(hold).await;
        self.cluster.lock().await.nodes().resume(v);
        self.note(format!("pause n{} for {hold:?}", v + 1));
    }

    /// Loss and latency for the hold, then the network as it was.
    async fn lossy_net(&mut self, hold: Duration) {
        let loss = self.rng.random_range(0.0..0.05);
        let latency_ms = self.rng.random_range(1..50u64);
        let mut before = None;
        NetSim::current().update_config(|c| {
            before = Some(c.clone());
            c.packet_loss_rate = loss;
            c.send_latency = Duration::from_millis(1)..Duration::from_millis(latency_ms + 1);
        });
        tokio::time::sleep(hold).await;
        if let Some(before) = before {
            NetSim::current().update_config(|c| *c = before);
        }
        self.note(format!(
            "loss {loss:.3} latency <{latency_ms} ms for {hold:?}"
        ));
    }
}
