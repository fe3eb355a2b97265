//! `raftmq`: the command users type.
//!
//! - `raftmq dev`: a 3-replica group in one process with its data under `./data` and the
//!   RocketMQ v2 endpoint on 127.0.0.1:8081. Ctrl-C stops it cleanly; a restart keeps the data.
//! - `raftmq admin ...`: topics, groups, status, replicas and transactions over the admin
//!   service.
//! - `raftmq bench`: send load through the v2 protocol and report throughput and latency.
//! - `raftmq produce` / `raftmq consume`: send and receive with the native client.

mod bench;
mod client_cli;
mod dev;
mod reset_cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::bail;
use clap::Parser;
use clap::Subcommand;
use raftmq_proto::admin as pb;
use raftmq_proto::admin::admin_client::AdminClient;

/// mimalloc instead of glibc's malloc: the broker allocates and frees many small buffers per
/// message (HTTP/2 frames, requests, log entries), and glibc's malloc took 14% of the servers'
/// CPU under the peers harness (docs/benchmarks.md, issue 13).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run a 3-replica broker in one process (data in ./data, v2 endpoint on 127.0.0.1:8081).
    Dev {
        /// Where the replicas keep their data.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// The RocketMQ v2 (and admin) endpoint.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// First Raft transport port; the replicas use this and the next two.
        #[arg(long, default_value_t = 7001)]
        raft_port: u16,
        /// Where to run the nameserver.
        #[arg(long, default_value = "127.0.0.1:9876")]
        nameserver: SocketAddr,
        /// Run no nameserver.
        #[arg(long)]
        no_nameserver: bool,
        /// Do not create topics and consumer groups on first use.
        #[arg(long)]
        no_auto_create: bool,
        /// Most receives and pulls waiting on each node at once (more get TOO_MANY_REQUESTS).
        #[arg(long, default_value_t = broker::limits::ClientLimits::default().max_long_polls)]
        max_long_polls: usize,
        /// Most Telemetry sessions on each node at once.
        #[arg(long, default_value_t = broker::limits::ClientLimits::default().max_telemetry_sessions)]
        max_telemetry_sessions: usize,
        /// Refuse sends while the data directory's disk has less than this many MiB free
        /// (0: never refuse; a write that then meets a full disk stops the process).
        #[arg(long, default_value_t = broker::config::DEFAULT_MIN_FREE_MB)]
        min_free_mb: u64,
        /// Delete log segments whose newest message is older than this many hours (0: keep).
        #[arg(long, default_value_t = 72.0)]
        retention_hours: f64,
        /// Delete the oldest log segments while the group's log exceeds this many MiB (0: no
        /// limit).
        #[arg(long, default_value_t = 0)]
        retention_mb: u64,
        /// How often retention runs, seconds.
        #[arg(long, default_value_t = 10.0)]
        retention_check_secs: f64,
        /// Log segment size, MiB (retention deletes whole segments; from 0.0625).
        #[arg(long, default_value_t = broker::config::DEFAULT_SEGMENT_MB)]
        segment_mb: f64,
        /// Below this many MiB free, delete the oldest log segments early, expired or not (0:
        /// never; must be above --min-free-mb).
        #[arg(long, default_value_t = 0)]
        delete_below_free_mb: u64,
        /// Seconds between two check-backs of an undecided transaction (the first comes
        /// after 6 s; `[transactions] check_interval_secs` of a cluster node).
        #[arg(long, default_value_t = 60.0)]
        tx_check_interval_secs: f64,
    },
    /// Run one broker node of a cluster.
    Broker {
        /// The node's configuration (see docs/operations.md).
        #[arg(short, long)]
        config: PathBuf,
        /// This node's disk was replaced and it was removed from its groups (`raftmq admin
        /// replica remove`): a group whose data directory is empty waits to be added back
        /// (`raftmq admin replica add`) instead of starting afresh. See docs/operations.md,
        /// "Replacing a failed disk".
        #[arg(long)]
        rejoin: bool,
        /// Testing only: keep file writes in this process until they are synced, so that
        /// killing it loses what was not synced, as a power loss would (the chaos suite's
        /// power-loss nemesis). Never use it in production.
        #[arg(long, hide = true)]
        test_lossy_disk: bool,
    },
    /// Run a nameserver.
    Nameserver {
        /// Where clients and brokers reach it.
        #[arg(long, default_value = "0.0.0.0:9876")]
        listen: SocketAddr,
        /// Forget a broker this long after its last registration (milliseconds).
        #[arg(long, default_value_t = 3000)]
        ttl_ms: u64,
        /// A file holding the cluster secret the brokers share (their `cluster_secret_file`);
        /// registrations not signed with it are refused.
        #[arg(long)]
        cluster_secret_file: PathBuf,
    },
    /// Administer a running broker.
    Admin {
        /// The broker's endpoint.
        #[arg(long, default_value = "127.0.0.1:8081")]
        endpoint: String,
        /// The cluster secret the brokers share (their `cluster_secret_file`): `replica`
        /// changes are signed with it, and refused without it.
        #[arg(long)]
        cluster_secret_file: Option<PathBuf>,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Measure send throughput and latency through the v2 protocol.
    Bench(bench::BenchArgs),
    /// Measure how late scheduled (DELAY) messages are delivered.
    BenchTimers(bench::timers::TimerArgs),
    /// Measure how soon transaction check-backs reach a producer.
    BenchCheckback(bench::checkback::CheckBackArgs),
    /// Measure receive throughput of filtered (SQL92, tag) groups over a backlog.
    BenchFilter(bench::filter::FilterArgs),
    /// Send messages with the native client.
    Produce(client_cli::ProduceArgs),
    /// Receive and acknowledge messages with the native client.
    Consume(client_cli::ConsumeArgs),
}

#[derive(Subcommand)]
enum AdminAction {
    /// Raft state of the replicas, topics and groups.
    Status,
    /// Create or update a topic.
    Topic {
        /// Topic name.
        name: String,
        /// Number of queues (never reduced; 8 if only --kind is given, 10 for a priority topic).
        #[arg(long)]
        queues: Option<u32>,
        /// normal, fifo, delay, transaction, mixed (if only --queues is given) or priority
        /// (each queue of a group one priority, 0 the lowest; 10 queues for 0-9).
        #[arg(long)]
        kind: Option<String>,
        /// Keep this topic's messages this many hours (at least 1 s), whatever the cluster's
        /// retention; 0: the cluster's again. Given alone, only the age changes (the topic
        /// must exist); queues and kind are kept.
        #[arg(long)]
        retention_hours: Option<f64>,
    },
    /// Create or update a consumer group.
    Group {
        /// Group name.
        name: String,
        /// Deliveries before a message goes to the dead-letter topic.
        #[arg(long, default_value_t = 17)]
        max_attempts: u32,
        /// Consume queue by queue, in order.
        #[arg(long)]
        fifo: bool,
        /// Retry backoff per attempt, comma-separated seconds (e.g. `1,5,10,30`; the last
        /// step repeats): how long a failed (nacked) message stays invisible. Default:
        /// RocketMQ's 1 s, 5 s, 10 s, 30 s, 1 min, ... 2 h.
        #[arg(long, value_delimiter = ',', conflicts_with = "backoff_exponential")]
        backoff: Vec<f64>,
        /// Exponential retry backoff instead: `initial,max,multiplier` (seconds, seconds,
        /// factor), e.g. `1,60,2`.
        #[arg(long, value_delimiter = ',', num_args = 1)]
        backoff_exponential: Vec<f64>,
    },
    /// Add or remove a replica of a Raft group (replacing a failed disk: docs/operations.md).
    Replica {
        #[command(subcommand)]
        change: ReplicaAction,
    },
    /// Transactions waiting for their producer's decision: list them, or decide one by hand.
    Tx {
        #[command(subcommand)]
        action: TxAction,
    },
    /// Move a consumer group's position in a topic (receive, push and pull consumers alike),
    /// backwards or forwards: to the earliest or latest message, an offset, or a time.
    /// Deliveries in flight in those queues are forgotten (their acks are refused).
    Reset(reset_cli::ResetArgs),
}

#[derive(Subcommand)]
enum TxAction {
    /// Undecided transactions (as this node's replicas have applied them), oldest first, with
    /// their check-backs so far; and each group's counts.
    List {
        /// Only this topic's.
        #[arg(long)]
        topic: Option<String>,
        /// At most this many per group.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// One JSON object, for machines.
        #[arg(long)]
        json: bool,
    },
    /// Commit one: its message is delivered (once).
    Commit {
        /// The transaction id (`tx1:...`, from `list` or the send's receipt).
        transaction_id: String,
    },
    /// Roll one back: its message is never delivered.
    Rollback {
        /// The transaction id.
        transaction_id: String,
    },
}

#[derive(Subcommand)]
enum ReplicaAction {
    /// Add NODE (started with `raftmq broker --rejoin`) to GROUP: it copies the log as a
    /// learner, then votes. Waits until it votes.
    Add {
        /// The Raft group.
        #[arg(long)]
        group: u64,
        /// The node to add (listed in `[[nodes]]`).
        #[arg(long)]
        node: u64,
        /// Give up (removing it again) if it has not copied the log within this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Remove NODE from GROUP (its votes and copy no longer count).
    Remove {
        /// The Raft group.
        #[arg(long)]
        group: u64,
        /// The node to remove.
        #[arg(long)]
        node: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Dev {
            data_dir,
            listen,
            raft_port,
            nameserver,
            no_nameserver,
            no_auto_create,
            max_long_polls,
            max_telemetry_sessions,
            min_free_mb,
            retention_hours,
            retention_mb,
            retention_check_secs,
            segment_mb,
            delete_below_free_mb,
            tx_check_interval_secs,
        } => {
            let transactions = broker::config::TransactionsToml {
                check_interval_secs: tx_check_interval_secs,
                ..Default::default()
            }
            .settings()
            .map_err(anyhow::Error::msg)?;
            let retention = broker::retention::RetentionSettings {
                delete_below_free: broker::config::delete_below_free(
                    delete_below_free_mb,
                    min_free_mb,
                )
                .map_err(anyhow::Error::msg)?,
                ..broker::config::RetentionToml {
                    max_age_hours: retention_hours,
                    max_mb_per_group: retention_mb,
                    check_secs: retention_check_secs,
                }
                .settings()
                .map_err(anyhow::Error::msg)?
            };
            let segment_bytes =
                broker::config::segment_bytes(segment_mb).map_err(anyhow::Error::msg)?;
            let opts = dev::DevOptions {
                data_dir,
                listen,
                raft_port,
                nameserver: (!no_nameserver).then_some(nameserver),
                auto_create: !no_auto_create,
                cluster_key: dev::random_key()?,
                max_long_polls,
                max_telemetry_sessions,
                min_free_mb,
                retention,
                segment_bytes,
                transactions,
            };
            println!(
                "raftmq dev: 3 nodes in {} (v2 on {listen} and the next two ports, raft {}..{}{}); Ctrl-C to stop",
                opts.data_dir.display(),
                raft_port,
                raft_port + 2,
                opts.nameserver
                    .map(|n| format!(", nameserver {n}"))
                    .unwrap_or_default()
            );
            dev::run(opts, shutdown_signal())
                .await
                .context("raftmq dev")?;
            println!("raftmq dev: stopped");
            Ok(())
        }
        Command::Broker {
            config,
            rejoin,
            test_lossy_disk,
        } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let mut cfg = broker::config::BrokerToml::parse(&text)
                .and_then(|t| t.into_config())
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            cfg.broker.rejoin = rejoin;
            println!(
                "raftmq broker: node {} serving v2 on {} (raft {})",
                cfg.node_id, cfg.listen, cfg.raft_listen
            );
            let disk: std::sync::Arc<dyn raft_store::disk::Disk> = if test_lossy_disk {
                tracing::warn!(
                    "--test-lossy-disk: unsynced writes die with this process (testing only)"
                );
                std::sync::Arc::new(raft_store::disk::LossyDisk::new())
            } else {
                std::sync::Arc::new(raft_store::disk::RealDisk::new())
            };
            broker::node::run(cfg, disk, shutdown_signal())
                .await
                .context("raftmq broker")?;
            println!("raftmq broker: stopped");
            Ok(())
        }
        Command::Nameserver {
            listen,
            ttl_ms,
            cluster_secret_file,
        } => {
            let key = broker::config::cluster_key(None, Some(&cluster_secret_file))
                .map_err(anyhow::Error::msg)?;
            println!("raftmq nameserver on {listen}");
            nameserver::run(
                listen,
                std::time::Duration::from_millis(ttl_ms),
                key,
                shutdown_signal(),
            )
            .await
            .map_err(anyhow::Error::msg)
        }
        Command::Admin {
            endpoint,
            cluster_secret_file,
            action,
        } => admin(&endpoint, cluster_secret_file.as_deref(), action).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchTimers(args) => bench::timers::run(args).await,
        Command::BenchCheckback(args) => bench::checkback::run(args).await,
        Command::BenchFilter(args) => bench::filter::run(args).await,
        Command::Produce(args) => client_cli::produce(args).await,
        Command::Consume(args) => client_cli::consume(args).await,
    }
}

/// Completes on Ctrl-C or SIGTERM (a graceful stop: leadership is handed over first).
async fn shutdown_signal() {
    #[cfg(not(madsim))]
    {
        use tokio::signal::unix::SignalKind;
        use tokio::signal::unix::signal;
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(madsim)]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn admin(
    endpoint: &str,
    secret_file: Option<&std::path::Path>,
    action: AdminAction,
) -> anyhow::Result<()> {
    let mut c = AdminClient::connect(format!("http://{endpoint}"))
        .await
        .with_context(|| format!("cannot reach the admin service at {endpoint}"))?;
    let check = |r: tonic::Response<pb::AdminReply>| -> anyhow::Result<()> {
        let e = r.into_inner().error;
        if e.is_empty() { Ok(()) } else { bail!("{e}") }
    };
    match action {
        AdminAction::Status => {
            let s = c.status(pb::StatusRequest {}).await?.into_inner();
            println!(
                "{:<6} {:<5} {:<10} {:>5} {:>7} {:>10} {:>10} {:>10}",
                "group", "node", "role", "term", "leader", "last_log", "committed", "applied"
            );
            for r in &s.replicas {
                println!(
                    "{:<6} {:<5} {:<10} {:>5} {:>7} {:>10} {:>10} {:>10}",
                    r.group, r.node, r.role, r.term, r.leader, r.last_log, r.committed, r.applied
                );
            }
            for r in &s.replicas {
                println!(
                    "members of group {} (as node {} knows them): voters {:?}{}",
                    r.group,
                    r.node,
                    r.voters,
                    if r.learners.is_empty() {
                        String::new()
                    } else {
                        format!(", learners {:?}", r.learners)
                    }
                );
                println!(
                    "log of group {} on node {}: {} segments, {} MiB{}",
                    r.group,
                    r.node,
                    r.segments,
                    r.log_bytes >> 20,
                    if r.log_start > 0 {
                        format!(", messages from log index {} (older deleted)", r.log_start)
                    } else {
                        String::new()
                    }
                );
                if !r.retention_note.is_empty() {
                    println!("retention of group {}: {}", r.group, r.retention_note);
                }
            }
            for t in s.topics {
                let total: u64 = t.queue_ends.iter().sum();
                let deleted: u64 = t.queue_starts.iter().sum();
                println!(
                    "topic {} ({}, {} queues): {total} messages {:?}{}",
                    t.name,
                    t.kind,
                    t.queues,
                    t.queue_ends,
                    if deleted > 0 {
                        format!(
                            ", {deleted} deleted by retention (queues start at {:?})",
                            t.queue_starts
                        )
                    } else {
                        String::new()
                    }
                );
                if let Some(ms) = t.retention_ms {
                    println!("topic {} keeps messages {}", t.name, human_ms(ms));
                }
            }
            for g in s.groups {
                println!(
                    "group {} (max attempts {}, fifo {})",
                    g.name, g.max_delivery_attempts, g.fifo
                );
            }
            let free = match s.disk_free_bytes {
                0 => "free space unknown".to_string(),
                b => format!("{} MiB free", b >> 20),
            };
            if s.sends_refused.is_empty() {
                println!("storage: accepting sends ({free})");
            } else {
                println!("storage: REFUSING SENDS: {}", s.sends_refused);
            }
            Ok(())
        }
        AdminAction::Replica { change } => {
            let Some(secret_file) = secret_file else {
                bail!(
                    "replica changes must be signed: give --cluster-secret-file (the file the \
                     brokers' cluster_secret_file names)"
                );
            };
            let key =
                broker::config::cluster_key(None, Some(secret_file)).map_err(anyhow::Error::msg)?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let (req, add) = match change {
                ReplicaAction::Add {
                    group,
                    node,
                    timeout_secs,
                } => (
                    pb::ReplicaChange {
                        group,
                        node,
                        forwarded: false,
                        catch_up_ms: timeout_secs.max(1).saturating_mul(1000),
                    },
                    true,
                ),
                ReplicaAction::Remove { group, node } => (
                    pb::ReplicaChange {
                        group,
                        node,
                        forwarded: false,
                        catch_up_ms: 0,
                    },
                    false,
                ),
            };
            let signed = broker::admin::sign_replica_change(&key, add, 0, now_ms, req);
            if add {
                println!(
                    "adding node {} to group {}: copying the log, then voting (this waits)",
                    req.node, req.group
                );
                check(c.add_replica(signed).await?)?;
                println!("node {} is a voter of group {}", req.node, req.group);
            } else {
                check(c.remove_replica(signed).await?)?;
                println!("node {} removed from group {}", req.node, req.group);
            }
            Ok(())
        }
        AdminAction::Topic {
            name,
            queues,
            kind,
            retention_hours,
        } => {
            let retention_ms = match retention_hours {
                None => None,
                // A positive age too small to be a millisecond is refused, not read as 0.
                Some(h) if h.is_finite() && (0.0..=876_000.0).contains(&h) => {
                    Some(((h * 3_600_000.0).round() as u64).max(u64::from(h > 0.0)))
                }
                Some(h) => {
                    return Err(anyhow::anyhow!(
                        "--retention-hours {h} is not between 0 and 876000"
                    ));
                }
            };
            // Neither queues nor kind, but an age: only the age changes.
            let (queues, kind) = match (queues, kind) {
                (None, None) if retention_ms.is_some() => (0, String::new()),
                // A priority topic: one queue per priority, 0-9 as RocketMQ's default.
                (q, Some(k)) if k.eq_ignore_ascii_case("priority") => (q.unwrap_or(10), k),
                (q, k) => (q.unwrap_or(8), k.unwrap_or_else(|| "mixed".into())),
            };
            check(
                c.upsert_topic(pb::TopicSpec {
                    name: name.clone(),
                    queues,
                    kind,
                    retention_ms,
                })
                .await?,
            )?;
            println!("topic {name} updated");
            Ok(())
        }
        AdminAction::Group {
            name,
            max_attempts,
            fifo,
            backoff,
            backoff_exponential,
        } => {
            if let Some(bad) = backoff
                .iter()
                .chain(&backoff_exponential)
                .find(|s| !s.is_finite() || **s < 0.0)
            {
                anyhow::bail!("backoff values must be finite and not negative (got {bad})");
            }
            let ms = |secs: f64| (secs * 1000.0).round() as u64;
            let exponential = match backoff_exponential[..] {
                [] => None,
                [initial, max, multiplier] => Some(pb::ExponentialBackoff {
                    initial_ms: ms(initial),
                    max_ms: ms(max),
                    multiplier,
                }),
                _ => anyhow::bail!("--backoff-exponential takes initial,max,multiplier"),
            };
            check(
                c.upsert_group(pb::GroupSpec {
                    name: name.clone(),
                    max_delivery_attempts: max_attempts,
                    fifo,
                    retry_backoff_ms: backoff.into_iter().map(ms).collect(),
                    exponential,
                })
                .await?,
            )?;
            println!("group {name} updated");
            Ok(())
        }
        AdminAction::Tx { action } => admin_tx(&mut c, action).await,
        AdminAction::Reset(a) => reset_cli::run(&mut c, a).await,
    }
}

/// `raftmq admin tx ...`.
async fn admin_tx(
    c: &mut AdminClient<tonic::transport::Channel>,
    action: TxAction,
) -> anyhow::Result<()> {
    let (id, commit) = match action {
        TxAction::List { topic, limit, json } => {
            let r = c
                .transactions(pb::TxListRequest {
                    topic: topic.unwrap_or_default(),
                    limit,
                })
                .await?
                .into_inner();
            if json {
                let pending: Vec<_> = r
                    .pending
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "group": p.group, "transaction_id": p.transaction_id,
                            "topic": p.topic, "message_id": p.message_id, "queue": p.queue,
                            "stored_ms": p.stored_ms, "next_check_ms": p.next_check_ms,
                            "checks": p.checks, "parked": p.parked,
                        })
                    })
                    .collect();
                let groups: Vec<_> = r
                    .groups
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "group": g.group, "pending": g.pending, "committed": g.committed,
                            "rolled_back": g.rolled_back, "discarded": g.discarded,
                            "checks": g.checks,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "pending": pending, "groups": groups })
                );
                return Ok(());
            }
            for g in &r.groups {
                println!(
                    "group {}: {} undecided; {} committed, {} rolled back, {} discarded after \
                     their last check, {} check-backs",
                    g.group, g.pending, g.committed, g.rolled_back, g.discarded, g.checks
                );
            }
            for p in &r.pending {
                println!(
                    "{}  topic {} queue {}  message {}  checks {}{}",
                    p.transaction_id,
                    p.topic,
                    p.queue,
                    p.message_id,
                    p.checks,
                    if p.parked {
                        ", kept after its last check".to_string()
                    } else {
                        format!(", next check at {} ms", p.next_check_ms)
                    }
                );
            }
            return Ok(());
        }
        TxAction::Commit { transaction_id } => (transaction_id, true),
        TxAction::Rollback { transaction_id } => (transaction_id, false),
    };
    let e = c
        .resolve_transaction(pb::TxResolve {
            transaction_id: id.clone(),
            commit,
        })
        .await?
        .into_inner()
        .error;
    if !e.is_empty() {
        bail!("transaction {id}: {e}");
    }
    println!(
        "transaction {id} {}",
        if commit { "committed" } else { "rolled back" }
    );
    Ok(())
}

/// A duration in milliseconds for people: hours, minutes or seconds.
fn human_ms(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) {
        format!("{} h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else {
        format!("{:.3} s", ms as f64 / 1000.0)
    }
}
