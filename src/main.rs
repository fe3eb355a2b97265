//! `raftmq`: the command users type.
//!
//! - `raftmq dev`: a local 3-replica Raft group in one process with its data under `./data`
//!   (until the broker lands, a demo counter is replicated: it proposes one increment a second
//!   and prints the group's state). Ctrl-C stops it cleanly; a restart keeps the data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::Subcommand;
use raft_store::disk::RealDisk;
use raft_store::group::Group;
use raft_store::group::GroupConfig;
use raft_store::network::Channels;
use raft_store::server::Registry;
use raft_store::state_machine::App;
use raft_store::types::GroupId;
use raft_store::types::LogIndex;

#[derive(Parser)]
#[command(
    name = "raftmq",
    version,
    about = "RaftMQ: a RocketMQ-compatible broker whose commit log is a Raft log"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local 3-replica group in one process (data in ./data).
    Dev {
        /// Where the replicas keep their data.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// First Raft transport port; replicas use this and the next two.
        #[arg(long, default_value_t = 7001)]
        raft_port: u16,
    },
}

/// The demo application: a replicated counter.
#[derive(Default)]
struct Counter(u64);

impl App for Counter {
    fn apply(&mut self, _index: LogIndex, request: &[u8]) -> Vec<u8> {
        let by = request.try_into().map(u64::from_le_bytes).unwrap_or(0);
        self.0 += by;
        self.0.to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        self.0 = u64::from_le_bytes(s.try_into().map_err(|_| "bad counter snapshot")?);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Dev {
            data_dir,
            raft_port,
        } => dev(data_dir, raft_port).await,
    }
}

async fn dev(data_dir: PathBuf, raft_port: u16) -> anyhow::Result<()> {
    let members: BTreeMap<u64, String> = (1..=3u64)
        .map(|i| (i, format!("127.0.0.1:{}", raft_port + i as u16 - 1)))
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut groups = Vec::new();
    let mut servers = Vec::new();
    for (&id, addr) in &members {
        let registry = Registry::default();
        let listen = addr.parse().context("raft address")?;
        let mut rx = stop_rx.clone();
        let reg = registry.clone();
        servers.push(tokio::spawn(async move {
            raft_store::server::serve(listen, reg, 64 << 20, async move {
                let _ = rx.changed().await;
            })
            .await
        }));
        let cfg = GroupConfig::new(
            GroupId(1),
            id,
            members.clone(),
            data_dir.join(format!("n{id}")),
        );
        let group = Group::start(
            cfg,
            Arc::new(RealDisk::new()),
            Counter::default(),
            &registry,
            &Channels::default(),
        )
        .await
        .with_context(|| format!("starting replica {id} in {}", data_dir.display()))?;
        groups.push(Arc::new(group));
    }
    println!(
        "raftmq dev: 3 replicas of group 1 (data in {}, raft on {:?}); Ctrl-C to stop",
        data_dir.display(),
        members.values().collect::<Vec<_>>()
    );

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                if let Some(leader) = groups.iter().find(|g| g.metrics().role == raft_store::group::Role::Leader) {
                    match leader.propose(1u64.to_le_bytes().to_vec()).await {
                        Ok(p) => println!(
                            "leader n{} term {}: counter = {} at log index {}",
                            leader.config().node_id,
                            leader.metrics().term,
                            u64::from_le_bytes(p.response.try_into().unwrap_or_default()),
                            p.index
                        ),
                        Err(e) => println!("proposal failed: {e}"),
                    }
                }
            }
        }
    }
    println!("stopping");
    // The leader goes first, while its followers are still up to take over.
    groups.sort_by_key(|g| g.metrics().role != raft_store::group::Role::Leader);
    for g in groups {
        let g = Arc::into_inner(g).expect("sole owner");
        g.shutdown().await?;
    }
    let _ = stop_tx.send(true);
    for s in servers {
        s.await??;
    }
    Ok(())
}
