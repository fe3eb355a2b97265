//! `raftmq admin reset`: moves a consumer group's position in a topic (issue 16, item 4), for
//! every consumer model, and prints where each queue went.

use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use clap::ArgGroup;
use clap::Args;
use raftmq_proto::admin as pb;
use raftmq_proto::admin::admin_client::AdminClient;

/// Where to, and which queues.
#[derive(Args)]
#[command(group(ArgGroup::new("to").required(true).args(["earliest", "latest", "offset", "time_ms", "ago_secs"])))]
pub struct ResetArgs {
    /// Consumer group (`ns%group` in namespace `ns`).
    group: String,
    /// Topic (`ns%topic` in namespace `ns`).
    topic: String,
    /// Only this Raft group (broker name); default: every group of the node hosting the topic.
    #[arg(long)]
    broker: Option<String>,
    /// Only this queue (with --broker when the topic spans several groups).
    #[arg(long)]
    queue: Option<u32>,
    /// To the first retained message.
    #[arg(long)]
    earliest: bool,
    /// Past the last message: only new messages come.
    #[arg(long)]
    latest: bool,
    /// To this offset (clamped to the retained messages).
    #[arg(long)]
    offset: Option<u64>,
    /// To the first message stored at or after this time (ms since the epoch).
    #[arg(long)]
    time_ms: Option<u64>,
    /// To the first message stored in the last this many seconds.
    #[arg(long)]
    ago_secs: Option<f64>,
}

/// Sends the reset and prints each queue's move.
pub async fn run(
    c: &mut AdminClient<tonic::transport::Channel>,
    a: ResetArgs,
) -> anyhow::Result<()> {
    use pb::reset_spec::To;
    let to = if a.earliest {
        To::Earliest(true)
    } else if a.latest {
        To::Latest(true)
    } else if let Some(o) = a.offset {
        To::Offset(o)
    } else if let Some(ms) = a.time_ms {
        To::TimestampMs(ms)
    } else {
        let secs = a.ago_secs.unwrap_or_default();
        if !secs.is_finite() || secs < 0.0 {
            anyhow::bail!("--ago-secs {secs}: give a number of seconds, 0 or more");
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        To::TimestampMs(now.saturating_sub((secs * 1000.0) as u64))
    };
    let r = c
        .reset_offset(pb::ResetSpec {
            group: a.group.clone(),
            topic: a.topic.clone(),
            broker: a.broker.unwrap_or_default(),
            queue: a.queue.map_or(-1, |q| q as i32),
            to: Some(to),
        })
        .await?
        .into_inner();
    if !r.error.is_empty() {
        anyhow::bail!("{}", r.error);
    }
    for m in &r.moved {
        println!(
            "{}/{}: {} -> {}{}",
            m.broker,
            m.queue,
            m.from,
            m.to,
            if m.dropped_in_flight > 0 {
                format!(" ({} in flight forgotten)", m.dropped_in_flight)
            } else {
                String::new()
            }
        );
    }
    println!("group {} reset in topic {}", a.group, a.topic);
    Ok(())
}
