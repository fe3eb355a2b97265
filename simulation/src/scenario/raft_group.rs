//! `raft_group_chaos`, the foundation issue's scenario: three clients propose to a bare
//! 3-replica Raft group ([`RaftCluster`]) while the nemesis kills and restarts the leader or any
//! replica (process crash or power loss), isolates the leader, takes power from every replica
//! at once, and flips a bit in a follower's log; that follower must refuse to start, and is
//! replaced through a membership change. Then everything heals: there must be a leader, a probe
//! proposal must commit, the replicas must converge, and the Raft checker (`checker::raft`)
//! must find nothing in the proposals' outcomes and the replicas' applied sequences.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::checker;
use crate::harness::Cluster;
use crate::harness::raft;
use crate::harness::raft::RaftCluster;
use crate::history::Outcome;
use crate::history::Proposal;
use crate::nemesis::Fault;
use crate::nemesis::Nemesis;
use crate::nemesis::Plan;
use crate::nemesis::Until;
use crate::nemesis::Who;
use crate::runner::RunResult;

type Shared = Arc<tokio::sync::Mutex<RaftCluster>>;

/// This scenario's own fault class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Own {
    /// A bit flips on one follower's disk (a minority); the follower must refuse to start and
    /// is replaced through a membership change.
    BitFlip,
}

/// The chaos scenario (see the module docs).
pub async fn chaos(seed: u64) -> RunResult {
    let rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let cluster: Shared = Arc::new(tokio::sync::Mutex::new(RaftCluster::new(3)));
    {
        let c = cluster.lock().await;
        c.wait_leader(Duration::from_secs(10))
            .await
            .ok_or_else(|| format!("no initial leader; start errors: {:?}", c.start_errors()))?;
    }
    let history: Arc<Mutex<Vec<Proposal>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&cluster, &history, &stop, seed);

    let plan = Plan {
        faults: vec![
            Fault::Kill(Who::Leader),
            Fault::Kill(Who::Any),
            Fault::Isolate(Who::Leader),
            Fault::PowerLossAll,
            Fault::Own(Own::BitFlip, Who::Follower),
        ],
        gap_ms: 300..2000,
        hold_ms: 100..2500,
        until: Until::Rounds(4..10),
    };
    let mut nemesis = Nemesis::new(cluster.clone(), rng, plan);
    let mut next_id = 10u64;
    while let Some(step) = nemesis.next().await {
        if let Some(own) = nemesis.apply(step).await {
            match own.kind {
                Own::BitFlip => bit_flip(&cluster, &mut nemesis, own.victim, &mut next_id).await?,
            }
        }
    }
    nemesis.heal().await;

    stop.store(true, Ordering::SeqCst);
    for t in clients {
        let _ = t.await;
    }
    let history = history.lock().unwrap().clone();
    check(&cluster, history, nemesis.log()).await
}

/// Three sequential proposers, each aiming at whoever it thinks leads.
fn spawn_clients(
    cluster: &Shared,
    history: &Arc<Mutex<Vec<Proposal>>>,
    stop: &Arc<AtomicBool>,
    seed: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3u64)
        .map(|p| {
            let (cluster, history, stop) = (cluster.clone(), history.clone(), stop.clone());
            let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(p));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let value = format!("p{p}-{n}").into_bytes();
                    n += 1;
                    let target = {
                        let c = cluster.lock().await;
                        c.leader().unwrap_or_else(|| rng.random_range(0..c.len()))
                    };
                    // Released before awaiting, so the nemesis is not held up by a proposal.
                    let proposal = cluster.lock().await.proposal(target, value.clone());
                    let outcome = proposal.await;
                    history.lock().unwrap().push(Proposal { value, outcome });
                    tokio::time::sleep(Duration::from_millis(rng.random_range(1..20))).await;
                }
            })
        })
        .collect()
}

/// Flips a bit in follower `i`'s log while it is down; it must refuse to start, and is then
/// replaced under the next node id.
async fn bit_flip(
    cluster: &Shared,
    nemesis: &mut Nemesis<RaftCluster, Own>,
    i: usize,
    next_id: &mut u64,
) -> Result<(), String> {
    let mut c = cluster.lock().await;
    if c.group(i).is_none() {
        nemesis.note(format!("bit flip skipped: n{} is down", i + 1));
        return Ok(());
    }
    c.kill(i);
    let Some(spot) = c.flip_bit_in_sealed_segment(i, nemesis.rng()).await else {
        c.restart(i, false);
        nemesis.note(format!(
            "bit flip skipped: n{} has no sealed segment",
            i + 1
        ));
        return Ok(());
    };
    c.restart(i, false);
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = cluster.lock().await.take_start_errors(i);
    if refused.is_empty() {
        return Err(format!(
            "n{} started although its log was damaged ({spot}); faults: {:?}",
            i + 1,
            nemesis.log()
        ));
    }
    *next_id += 1;
    replace(cluster, i, *next_id).await.map_err(|e| {
        format!(
            "replacing n{} failed: {e}; faults: {:?}",
            i + 1,
            nemesis.log()
        )
    })?;
    nemesis.note(format!(
        "bit flip on n{} ({spot}): refused to start, replaced as node {next_id}",
        i + 1
    ));
    Ok(())
}

/// Replaces damaged replica `i` the way Raft allows: the leader removes its old id, its disk
/// is emptied, it starts as a replacement under `new_id`, and the leader adds it back as a
/// learner and, once caught up, as a voter.
async fn replace(cluster: &Shared, i: usize, new_id: u64) -> Result<(), String> {
    let old_id = cluster.lock().await.node_id(i);
    let on_leader = |step: &'static str| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no leader");
        while tokio::time::Instant::now() < deadline {
            let g = {
                let c = cluster.lock().await;
                c.leader().and_then(|l| c.group(l))
            };
            if let Some(g) = g {
                let r = match step {
                    "remove" => {
                        tokio::time::timeout(Duration::from_secs(5), g.remove_member(old_id)).await
                    }
                    _ => {
                        // The outer bound governs (a retry follows it).
                        let add = g.add_member(new_id, raft::addr(i), Duration::from_secs(60));
                        tokio::time::timeout(Duration::from_secs(10), add).await
                    }
                };
                match r {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "timed out".into(),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("{step} of node {old_id}/{new_id}: {last}"))
    };
    on_leader("remove").await?;
    {
        let mut c = cluster.lock().await;
        c.kill(i);
        c.wipe_for_replacement(i, new_id)
            .await
            .map_err(|e| format!("wiping n{}: {e}", i + 1))?;
        c.restart(i, false);
    }
    on_leader("add").await
}

/// Liveness, then safety: every replica restarted from its own disk, there is a leader, a
/// probe proposal commits, the replicas converge, and the checker finds nothing.
async fn check(cluster: &Shared, mut history: Vec<Proposal>, log: &[String]) -> RunResult {
    let c = cluster.lock().await;
    let errors = c.start_errors();
    if !errors.is_empty() {
        return Err(format!(
            "replica failed to restart from its own disk: {errors:?}; faults: {log:?}"
        ));
    }
    let leader = c
        .wait_leader(Duration::from_secs(10))
        .await
        .ok_or_else(|| format!("no leader after healing; faults: {log:?}"))?;
    let probe = probe(&c, leader).await;
    if !matches!(probe, Outcome::Ok(_)) {
        let ms: Vec<_> = (0..c.len())
            .map(|i| c.group(i).map(|g| g.metrics()))
            .collect();
        return Err(format!(
            "probe proposal did not commit after healing ({probe:?}); replicas: {ms:?}; faults: {log:?}"
        ));
    }
    c.wait_converged(Duration::from_secs(20))
        .await
        .map_err(|e| format!("{e}; faults: {log:?}"))?;

    history.push(Proposal {
        value: b"probe".to_vec(),
        outcome: probe,
    });
    let violations = checker::check(&history, &c.states());
    if !violations.is_empty() {
        return Err(format!(
            "{} violations, first: {:?}; faults: {log:?}",
            violations.len(),
            &violations[..violations.len().min(5)]
        ));
    }
    let acked = history
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Ok(_)))
        .count();
    let unknown = history
        .iter()
        .filter(|p| p.outcome == Outcome::Info)
        .count();
    let replaced = log.iter().filter(|l| l.starts_with("bit flip on")).count();
    Ok(format!(
        "{acked} acked, {unknown} unknown of {} proposals; {} faults ({replaced} damaged replicas replaced); {} unsynced writes lost in crashes",
        history.len(),
        log.len(),
        c.lost_writes()
    ))
}

/// Proposes `probe` until it commits (20 tries, 200 ms apart), at the current leader.
async fn probe(c: &RaftCluster, leader: usize) -> Outcome {
    let mut outcome = Outcome::Info;
    for _ in 0..20 {
        let l = c.leader().unwrap_or(leader);
        outcome = c.propose(l, b"probe".to_vec()).await;
        if matches!(outcome, Outcome::Ok(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    outcome
}
