//! The disk faults of `cluster_chaos` and what an operator does about them: a bit flipped in
//! a node's log (it must refuse to start), damage to its state (it must repair it), and the
//! replacement of a node whose log was damaged (`raftmq admin replica remove` / `add`, as
//! docs/operations.md says). Split from `cluster.rs`, which was over 800 lines.

use std::time::Duration;

use broker::replica::AddRefusal;

use super::Own;
use super::Shared;
use crate::harness::brokers::BrokerCluster;
use crate::nemesis::Nemesis;

/// Flips a bit in node `v`'s log while it is down. The node must refuse to start; it stays
/// down, and after the heal it is replaced as an operator would ([`replace`]). Returns whether
/// a bit was flipped.
pub(super) async fn bit_flip(
    cluster: &Shared,
    nemesis: &mut Nemesis<BrokerCluster, Own>,
    v: usize,
) -> Result<bool, String> {
    let mut c = cluster.lock().await;
    c.nodes.kill(v);
    let Some(spot) = c.flip_before_last_frame(v, nemesis.rng()) else {
        c.nodes.restart(v, false);
        return Ok(false);
    };
    c.nodes.restart(v, false);
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = cluster.lock().await;
    if c.take_start_errors(v).is_empty() {
        return Err(format!(
            "n{} started although its log was damaged ({spot}); faults {:?}",
            v + 1,
            nemesis.log()
        ));
    }
    c.nodes.kill(v);
    nemesis.spare(v);
    nemesis.note(format!(
        "bit flip on n{} ({spot}): refused to start, left down until it is replaced after the heal",
        v + 1
    ));
    Ok(true)
}

/// Damages node `v`'s state (not its log) while it is down, and restarts it: it must repair
/// the state (from its log, or a peer's snapshot its log continues) and start, which the heal
/// checks (no start error), and every checker then runs with it taking part.
pub(super) async fn state_damage(
    cluster: &Shared,
    nemesis: &mut Nemesis<BrokerCluster, Own>,
    v: usize,
) -> Result<(), String> {
    let mut c = cluster.lock().await;
    if !c.nodes.is_alive(v) {
        return Ok(());
    }
    c.nodes.kill(v);
    let what = c.damage_state(v);
    c.nodes.restart(v, false);
    drop(c);
    if let Some(what) = what {
        nemesis.note(format!(
            "state damage on n{} ({what}): repaired at restart",
            v + 1
        ));
    }
    Ok(())
}

/// Replaces node `v` (down) the way docs/operations.md tells an operator to, under the
/// running workload, once the other nodes are healthy (a membership change needs a majority):
/// each group's leader removes it, its disk is emptied, it starts waiting
/// to be added (`--rejoin`), and each group's leader adds it back (a learner until caught up,
/// then a voter). The node keeps its id. What `raftmq admin replica` does, called on the
/// leaders' groups directly.
pub(super) async fn replace(cluster: &Shared, v: usize, groups: u64) -> Result<(), String> {
    let id = v as u64 + 1;
    for step in ["remove", "add"] {
        if step == "add" {
            let mut c = cluster.lock().await;
            c.wipe_for_rejoin(v)
                .await
                .map_err(|e| format!("wiping n{}: {e}", v + 1))?;
            c.nodes.restart(v, false);
        }
        for g in 1..=groups {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut last = String::from("no leader");
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("{step} of n{} in group {g}: {last}", v + 1));
                }
                let (replica, addr, node) = {
                    let c = cluster.lock().await;
                    let leader = c.leader_of(g);
                    let replica = leader
                        .and_then(|l| c.core(l))
                        .and_then(|core| core.group(g).ok().map(|h| h.replica.clone()));
                    (
                        replica,
                        c.raft_addr(v),
                        leader.and_then(|l| c.nodes.handle(l)),
                    )
                };
                if let (Some(replica), Some(node)) = (replica, node) {
                    let group = replica.group();
                    let m = group.metrics();
                    // A retry after a timed-out call may find the change already made.
                    let r = match step {
                        "remove" if !m.voters.contains(&id) && !m.learners.contains(&id) => break,
                        "remove" => {
                            tokio::time::timeout(Duration::from_secs(5), group.remove_member(id))
                                .await
                                .map(|r| r.map_err(|e| AddRefusal::Failed(e.to_string())))
                        }
                        _ if m.voters.contains(&id) => break,
                        _ => {
                            // On the leader's node, as its admin service would run it (the
                            // probe of the new node goes over that node's network).
                            let add = node.spawn(async move {
                                replica.add_replica(id, addr, Duration::from_secs(60)).await
                            });
                            // Waited for to its end (its catch-up deadline removes a learner
                            // that did not catch up), so no two additions overlap.
                            match tokio::time::timeout(Duration::from_secs(70), add).await {
                                Ok(Ok(r)) => Ok(r),
                                Ok(Err(_)) => Ok(Err(AddRefusal::Failed(
                                    "the leader's node went down".into(),
                                ))),
                                Err(e) => Err(e),
                            }
                        }
                    };
                    match r {
                        Ok(Ok(())) => break,
                        // What `replica add` tells the operator: retention overtook the copy,
                        // so empty the node and start it with `--rejoin` again.
                        Ok(Err(AddRefusal::MustCopyAgain(e))) => {
                            last = e;
                            let mut c = cluster.lock().await;
                            c.nodes.kill(v);
                            c.wipe_group_for_rejoin(v, g)
                                .await
                                .map_err(|e| format!("wiping n{}: {e}", v + 1))?;
                            c.nodes.restart(v, false);
                        }
                        Ok(Err(e)) => last = e.to_string(),
                        Err(_) => last = "timed out".into(),
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Ok(())
}
