//! The command line: `test`, `matrix`, `replay`, `check` (see `main.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::Subcommand;

use crate::disk;
use crate::net;
use crate::python;
use crate::run;
use crate::run::Opts;
use crate::run::Verdict;

#[derive(Parser)]
#[command(about = "RaftMQ's real-process chaos suite")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct TestArgs {
    /// Test name (the store subdirectory); defaults to the nemesis list.
    #[arg(long)]
    name: Option<String>,
    /// Comma-separated: none, partition, kill, pause, clock, packet, power-loss, disk-full.
    #[arg(long, default_value = "partition,kill")]
    nemesis: String,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Broker nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Raft groups.
    #[arg(long, default_value_t = 2)]
    groups: u64,
    /// Plain producers.
    #[arg(long, default_value_t = 3)]
    producers: u64,
    /// FIFO producers (one message group each).
    #[arg(long, default_value_t = 2)]
    fifo_producers: u64,
    /// Plain consumers.
    #[arg(long, default_value_t = 2)]
    consumers: u64,
    /// No offset reader.
    #[arg(long)]
    no_puller: bool,
    /// No SQL92-filtered consumer group.
    #[arg(long)]
    no_filtered: bool,
    /// No operator resetting consumer groups to the earliest message.
    #[arg(long)]
    no_resets: bool,
    /// Seed (default: from the clock; printed and stored in test.json).
    #[arg(long)]
    seed: Option<u64>,
    /// Shortest and longest quiet time between faults, ms.
    #[arg(long, num_args = 2, default_values_t = [2000, 5000])]
    quiet_ms: Vec<u64>,
    /// Shortest and longest fault, ms.
    #[arg(long, num_args = 2, default_values_t = [3000, 8000])]
    hold_ms: Vec<u64>,
    /// Bound of the final drain, s.
    #[arg(long, default_value_t = 60)]
    drain: u64,
    /// The raftmq binary.
    #[arg(long, default_value = "target/debug/raftmq")]
    bin: PathBuf,
    /// Where run directories go.
    #[arg(long, default_value = "target/jepsen")]
    store: PathBuf,
    /// Producer/consumer pairs on the official Python client (needs
    /// target/interop-venv or --python-bin; 0: none).
    #[arg(long, default_value_t = 1)]
    python: u64,
    /// The Python that has rocketmq-python-client (default: target/interop-venv/bin/python).
    #[arg(long)]
    python_bin: Option<PathBuf>,
    /// Keep messages this many seconds (retention on, 128 KiB segments) and check what it
    /// deletes (default: the brokers' 72 h).
    #[arg(long)]
    retention_secs: Option<f64>,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run.
    Test(TestArgs),
    /// The CI matrix.
    Matrix {
        /// Seconds per run.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Only these runs (comma-separated names).
        #[arg(long)]
        only: Option<String>,
        /// The raftmq binary.
        #[arg(long, default_value = "target/debug/raftmq")]
        bin: PathBuf,
        /// Where run directories go.
        #[arg(long, default_value = "target/jepsen")]
        store: PathBuf,
        /// Base seed (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run a stored test again (same options and seed).
    Replay {
        /// The run directory.
        dir: PathBuf,
    },
    /// Re-check a stored run's history.
    Check {
        /// The run directory.
        dir: PathBuf,
    },
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn opts(a: &TestArgs) -> Opts {
    Opts {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| a.nemesis.replace(',', "+")),
        nemesis: a.nemesis.clone(),
        time_s: a.time,
        nodes: a.nodes,
        groups: a.groups,
        producers: a.producers,
        fifo_producers: a.fifo_producers,
        consumers: a.consumers,
        puller: !a.no_puller,
        filtered: !a.no_filtered,
        resets: !a.no_resets,
        seed: a.seed.unwrap_or_else(clock_seed),
        quiet_ms: (a.quiet_ms[0], a.quiet_ms[1].max(a.quiet_ms[0])),
        hold_ms: (a.hold_ms[0], a.hold_ms[1].max(a.hold_ms[0])),
        drain_s: a.drain,
        bin: a.bin.clone(),
        store: a.store.clone(),
        python: a.python,
        python_bin: a.python_bin.clone().or_else(python::default_python),
        retention_s: a.retention_secs,
    }
}

fn test(o: &Opts) -> ExitCode {
    if let Some(why) = net::unavailable() {
        println!("jepsen {}: skipped: {why}", o.name);
        return ExitCode::SUCCESS;
    }
    net::sweep_stale();
    disk::sweep_stale(&o.store);
    println!(
        "jepsen {}: nemesis {} for {} s on {} nodes, seed {}",
        o.name, o.nemesis, o.time_s, o.nodes, o.seed
    );
    match run::run(o) {
        Ok((v, dir)) => {
            let results = std::fs::read_to_string(dir.join("results.json")).unwrap_or_default();
            let stats: serde_json::Value = serde_json::from_str(&results).unwrap_or_default();
            println!("  stats {}", stats["stats"]);
            println!("  report {}", dir.join("report.html").display());
            // `replay:` lines are what the test script's summary repeats: failures only.
            let how = if v == Verdict::Valid {
                "  same again"
            } else {
                "  replay"
            };
            println!("{how}: cargo run -p jepsen -- replay {}", dir.display());
            match v {
                Verdict::Valid => {
                    println!("jepsen {}: valid", o.name);
                    ExitCode::SUCCESS
                }
                Verdict::Invalid(kinds) => {
                    println!("jepsen {}: INVALID {kinds:?}", o.name);
                    for (k, a) in stats["anomalies"].as_object().into_iter().flatten() {
                        for e in a["examples"].as_array().into_iter().flatten().take(3) {
                            println!("  {k}: {e}");
                        }
                    }
                    ExitCode::from(1)
                }
                Verdict::Unknown(why) => {
                    println!("jepsen {}: UNKNOWN {why}", o.name);
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            println!("jepsen {}: ERROR {e:#}", o.name);
            ExitCode::from(3)
        }
    }
}

/// The CI matrix: (name, extra arguments).
const MATRIX: &[(&str, &[&str])] = &[
    ("none", &["--nemesis", "none"]),
    ("partition", &["--nemesis", "partition"]),
    ("kill", &["--nemesis", "kill"]),
    ("pause", &["--nemesis", "pause"]),
    ("clock", &["--nemesis", "clock"]),
    ("packet", &["--nemesis", "packet"]),
    ("power-loss", &["--nemesis", "power-loss,partition"]),
    ("ring-5", &["--nemesis", "partition", "--nodes", "5"]),
    ("combined", &["--nemesis", "partition,kill,pause,clock"]),
    ("disk-full", &["--nemesis", "disk-full,kill"]),
    (
        "retention",
        // The Python clients' send receipts name no queue position to observe deletions by.
        &[
            "--nemesis",
            "partition,kill",
            "--retention-secs",
            "15",
            "--python",
            "0",
        ],
    ),
];

fn matrix(
    time: u64,
    only: Option<&str>,
    bin: &std::path::Path,
    store: &std::path::Path,
    seed: u64,
) -> ExitCode {
    if let Some(why) = net::unavailable() {
        println!("jepsen: skipped: {why}");
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("own path");
    let (mut passed, mut failed) = (0, 0);
    for (i, (name, extra)) in MATRIX.iter().enumerate() {
        if only.is_some_and(|o| !o.split(',').any(|n| n == *name)) {
            continue;
        }
        let mut code = None;
        for attempt in 0..2 {
            let s = (seed ^ ((i as u64 + 1) * 0x9e37_79b9) ^ attempt).to_string();
            let status = std::process::Command::new(&exe)
                .args([
                    "test",
                    "--name",
                    name,
                    "--time",
                    &time.to_string(),
                    "--seed",
                    &s,
                ])
                .args([
                    "--bin".as_ref(),
                    bin.as_os_str(),
                    "--store".as_ref(),
                    store.as_os_str(),
                ])
                .args(*extra)
                .status();
            code = status.ok().and_then(|s| s.code());
            // An unknown result (liveness) is repeated once, then counts as a failure.
            if code != Some(2) {
                break;
            }
        }
        if code == Some(0) {
            passed += 1;
        } else {
            failed += 1;
            println!("jepsen {name}: FAILED (exit {code:?})");
        }
    }
    println!("jepsen: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,raftmq_client=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Test(a) => test(&opts(&a)),
        Cmd::Matrix {
            time,
            only,
            bin,
            store,
            seed,
        } => matrix(
            time,
            only.as_deref(),
            &bin,
            &store,
            seed.unwrap_or_else(clock_seed),
        ),
        Cmd::Replay { dir } => {
            let text = std::fs::read_to_string(dir.join("test.json")).unwrap_or_default();
            let stored: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            match serde_json::from_value::<Opts>(stored["opts"].clone()) {
                Ok(o) => test(&o),
                Err(e) => {
                    println!(
                        "jepsen replay: {} has no readable test.json: {e}",
                        dir.display()
                    );
                    ExitCode::from(3)
                }
            }
        }
        Cmd::Check { dir } => match run::recheck(&dir) {
            Ok(v) => {
                println!("jepsen check {}: {v:?}", dir.display());
                if v == Verdict::Valid {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                println!("jepsen check {}: ERROR {e:#}", dir.display());
                ExitCode::from(3)
            }
        },
    }
}
