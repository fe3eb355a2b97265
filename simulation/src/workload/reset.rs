//! The operator (issue 16, item 4): now and then it resets the plain or the FIFO consumer
//! group to the earliest message of its topic, through a broker node's admin service as
//! `raftmq admin reset --earliest` does, and records each reset
//! ([`Op::Reset`]). The consumers then get everything again; the checker accepts what a reset
//! explains and nothing more (`checker::messages` `resets`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use checker::messages::Op;
use checker::messages::Result3;
use raftmq_proto::admin as pb;
use raftmq_proto::admin::admin_client::AdminClient;
use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tonic::transport::Endpoint;

use super::Ctx;

/// Resets per run, at most: each makes the group consume its topic again.
const MAX_RESETS: u32 = 3;

/// Resets the plain group (and the FIFO group too, if `fifo`) at random moments until `stop`,
/// through a random one of `admins` (broker nodes' admin addresses, `host:port`).
pub async fn reset(ctx: Ctx, admins: Vec<String>, fifo: bool, seed: u64, stop: Arc<AtomicBool>) {
    let mut r = SmallRng::seed_from_u64(seed);
    let mut done = 0;
    while done < MAX_RESETS && !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(r.random_range(2_000..6_000))).await;
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let reset_fifo = fifo && r.random::<bool>();
        let (group, topic) = if reset_fifo {
            (ctx.names.fifo_group, ctx.names.fifo_topic)
        } else {
            (ctx.names.group, ctx.names.topic)
        };
        let admin = &admins[r.random_range(0..admins.len())];
        let invoked = ctx.now();
        let result = tokio::time::timeout(Duration::from_secs(5), async {
            let channel = Endpoint::from_shared(format!("http://{admin}"))
                .map_err(|e| e.to_string())?
                .connect_lazy();
            let reply = AdminClient::new(channel)
                .reset_offset(pb::ResetSpec {
                    group: group.into(),
                    topic: topic.into(),
                    broker: String::new(),
                    queue: -1,
                    to: Some(pb::reset_spec::To::Earliest(true)),
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            if reply.error.is_empty() {
                Ok(())
            } else {
                Err(reply.error)
            }
        })
        .await;
        // A node that hosts none of the topic's groups (yet) submitted nothing. Anything else
        // but success may have reset some Raft groups of the topic (each is reset on its
        // own): unknown, which the checker must assume took effect at any later time.
        let result = match result {
            Ok(Ok(())) => Result3::Ok,
            Ok(Err(e)) if e.starts_with("no Raft group") => Result3::Fail,
            _ => Result3::Info,
        };
        ctx.record(Op::Reset {
            fifo: reset_fifo,
            invoked,
            completed: ctx.now(),
            result,
        });
        done += 1;
    }
}
