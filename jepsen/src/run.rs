//! One test run: namespaces, processes, the shared workload, the nemesis, heal, the liveness
//! phase (leaders, a probe send, a full drain within a bound), the shared checkers, and the
//! run directory `store/<name>/<timestamp>/` with `test.json`, `history.jsonl`,
//! `results.json`, `report.html` and the nodes' logs (data directories are kept only when the
//! run is not valid).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use checker::jsonl;
use checker::jsonl::Fault;
use checker::messages::Anomaly;
use raftmq_client::ClientConfig;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use serde::Serialize;
use simulation::workload;
use simulation::workload::Ctx;
use simulation::workload::Names;

use crate::db;
use crate::db::Db;
use crate::nemesis::Kind;
use crate::nemesis::Nemesis;
use crate::net;
use crate::net::Net;
use crate::python::Python;

const NAMES: Names = Names {
    topic: "JTopic",
    fifo_topic: "JFifoTopic",
    group: "JGroup",
    fifo_group: "JFifoGroup",
    pull_group: "JPullGroup",
    filtered_group: "JFilteredGroup",
};

/// Everything a run depends on; stored in `test.json` so `replay` can run it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opts {
    /// Test name (the store subdirectory).
    pub name: String,
    /// Comma-separated nemeses (`none`, `partition`, `kill`, `pause`, `clock`, `packet`,
    /// `power-loss`, `disk-full`).
    pub nemesis: String,
    /// Seconds of workload under faults.
    pub time_s: u64,
    /// Broker nodes (3 or 5).
    pub nodes: usize,
    /// Raft groups.
    pub groups: u64,
    /// Plain producers.
    pub producers: u64,
    /// FIFO producers (one message group each).
    pub fifo_producers: u64,
    /// Plain consumers.
    pub consumers: u64,
    /// An offset reader.
    pub puller: bool,
    /// A consumer of a SQL92-filtered group on the plain topic (issue 16; absent from runs
    /// recorded before it).
    #[serde(default)]
    pub filtered: bool,
    /// An operator resets the plain or FIFO group to the earliest message now and then
    /// (issue 16; absent from runs recorded before it).
    #[serde(default)]
    pub resets: bool,
    /// Seed of the nemesis schedule and the workload.
    pub seed: u64,
    /// Quiet time between faults (ms).
    pub quiet_ms: (u64, u64),
    /// Fault duration (ms).
    pub hold_ms: (u64, u64),
    /// Bound of the final drain (s).
    pub drain_s: u64,
    /// The `raftmq` binary.
    pub bin: PathBuf,
    /// Where run directories go.
    pub store: PathBuf,
    /// Producer/consumer pairs on the official Python client (0: none).
    #[serde(default)]
    pub python: u64,
    /// The Python that has the official client.
    #[serde(default)]
    pub python_bin: Option<PathBuf>,
    /// Keep messages this many seconds (the brokers' `[retention] max_age_hours`), and watch
    /// the queues' starts: what retention deleted is recorded as `expired` and checked for
    /// `premature-deletion`. `None`: the default age (72 h, nothing is deleted in a run).
    #[serde(default)]
    pub retention_s: Option<f64>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No violations.
    Valid,
    /// Violations (the anomaly types).
    Invalid(Vec<String>),
    /// Liveness could not be established (the reason).
    Unknown(String),
}

fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn git_sha() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// What the run recorded, for the checker.
struct Recorded {
    ops: Vec<checker::messages::Op>,
    faults: Vec<Fault>,
    /// Violations found by the harness itself (a node crashed, a tool failed).
    harness: Vec<Anomaly>,
    /// Why liveness was not established, if it was not.
    unfinished: Option<String>,
    end_us: u64,
}

/// Runs one test and writes its directory; returns the verdict and the directory.
pub fn run(opts: &Opts) -> anyhow::Result<(Verdict, PathBuf)> {
    let kinds = Kind::parse_list(&opts.nemesis)?;
    let dir = opts.store.join(&opts.name).join(timestamp());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir)?;
    let test = serde_json::json!({ "git": git_sha(), "opts": opts });
    std::fs::write(dir.join("test.json"), format!("{test:#}\n"))?;

    let run_id = format!("j{}", std::process::id() % 100_000);
    let net = Net::create(&run_id, opts.nodes)?;
    let bin = std::fs::canonicalize(&opts.bin)
        .with_context(|| format!("the raftmq binary {}", opts.bin.display()))?;
    let faketime = kinds.contains(&Kind::Clock);
    if faketime && !std::path::Path::new(db::LIBFAKETIME).exists() {
        anyhow::bail!(
            "the clock nemesis needs libfaketime ({} is missing)",
            db::LIBFAKETIME
        );
    }
    let lossy = kinds.contains(&Kind::PowerLoss);
    let small_disks = kinds.contains(&Kind::DiskFull);
    let db = Mutex::new(Db::new(&bin, &dir, opts, faketime, lossy, small_disks)?);
    db.lock().unwrap().start(&net)?;

    // The clients live in their own namespace: enter it before the runtime starts its threads.
    let recorded = std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<Recorded> {
            net::enter(&net.client_ns())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(drive(opts, kinds, &net, &db, &dir))
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the client thread panicked")))
    })?;
    db.lock().unwrap().stop();
    let verdict = check_and_write(opts, &dir, &recorded)?;
    if verdict == Verdict::Valid {
        let _ = std::fs::remove_dir_all(dir.join("data"));
    }
    drop(net);
    Ok((verdict, dir))
}

/// The native clients' shared context.
fn client_ctx(opts: &Opts) -> Ctx {
    let mut config = ClientConfig::new(db::nameserver());
    config.request_timeout = Duration::from_secs(3);
    config.long_polling_timeout = Duration::from_secs(1);
    config.route_refresh = Duration::from_secs(5);
    Ctx {
        config,
        names: NAMES,
        history: Arc::default(),
        start: tokio::time::Instant::now(),
        invisible: Duration::from_secs(5),
        single_group: opts.groups == 1,
        send_pause_ms: (5, 40),
        on_ack: None,
    }
}

/// Stop flags of the workload: producers stop when the chaos ends (consumers then ack
/// everything), consumers after the drain.
struct Stops {
    producers: Arc<AtomicBool>,
    consumers: Arc<AtomicBool>,
}

/// Starts the native clients of `opts`.
fn start_clients(opts: &Opts, ctx: &Ctx, stops: &Stops) -> Vec<tokio::task::JoinHandle<()>> {
    let (seed, p_stop, c_stop) = (opts.seed, &stops.producers, &stops.consumers);
    let mut tasks = Vec::new();
    for p in 0..opts.producers {
        let (name, s) = (format!("p{p}"), p_stop.clone());
        // The first resends unknown outcomes with the same id: the idempotent producer.
        let f = workload::produce(ctx.clone(), name, None, seed ^ (p + 1), s, p == 0);
        tasks.push(tokio::spawn(f));
    }
    for p in 0..opts.fifo_producers {
        let (name, g, s) = (format!("f{p}"), Some(format!("fg{p}")), p_stop.clone());
        let f = workload::produce(ctx.clone(), name, g, seed ^ (p + 11), s, false);
        tasks.push(tokio::spawn(f));
    }
    for k in 0..opts.consumers {
        let (s, d) = (c_stop.clone(), p_stop.clone());
        let f = workload::consume(ctx.clone(), k as u32, false, seed ^ (k + 21), s, d);
        tasks.push(tokio::spawn(f));
    }
    if opts.fifo_producers > 0 {
        let (s, d) = (c_stop.clone(), p_stop.clone());
        tasks.push(tokio::spawn(workload::consume(
            ctx.clone(),
            99,
            true,
            seed ^ 31,
            s,
            d,
        )));
    }
    if opts.filtered {
        let (s, d) = (c_stop.clone(), p_stop.clone());
        let k = checker::messages::filtered::FILTERED_CONSUMER;
        let f = workload::consume(ctx.clone(), k, false, seed ^ 61, s, d);
        tasks.push(tokio::spawn(f));
    }
    if opts.puller {
        tasks.push(tokio::spawn(workload::pull(ctx.clone(), c_stop.clone())));
    }
    if opts.resets {
        // Every node hosts every group (`Db::new`): any node's admin service resets them all.
        let admins = (1..=opts.nodes).map(db::endpoint).collect();
        let fifo = opts.fifo_producers > 0;
        let f = workload::reset(ctx.clone(), admins, fifo, seed ^ 71, p_stop.clone());
        tasks.push(tokio::spawn(f));
    }
    tasks
}

fn start_python(opts: &Opts, net: &Net, dir: &std::path::Path) -> anyhow::Result<Option<Python>> {
    // The Python clients' times line up with the native ones' (both from the run's start).
    let t0_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(match (&opts.python_bin, opts.python) {
        (_, 0) => None,
        (Some(bin), n) => Some(Python::start(
            bin,
            &net.client_ns(),
            dir,
            &db::nameserver(),
            n,
            t0_ns,
            opts.time_s,
            opts.drain_s,
        )?),
        (None, _) => anyhow::bail!("--python needs the official Python client (--python-bin)"),
    })
}

/// Heal, then liveness: leaders, a probe send, the drain. Returns why not, if not.
async fn heal_and_drain(
    opts: &Opts,
    ctx: &Ctx,
    net: &Net,
    db: &Mutex<Db>,
) -> anyhow::Result<Option<String>> {
    net.heal()?;
    db.lock().unwrap().heal(net)?;
    if let Err(e) = db::wait_led(opts.nodes, opts.groups, Duration::from_secs(30)).await {
        return Ok(Some(format!("unavailable after healing: {e:#}")));
    }
    if let Err(e) = workload::probe(ctx.clone(), 80).await {
        return Ok(Some(format!(
            "the probe send failed 20 s after healing: {e}"
        )));
    }
    if opts.retention_s.is_none() {
        // Healed and led: an undecided transaction is checked within its first delay (1 s,
        // `db.rs`), one more interval and two seconds of slack for real processes on a
        // loaded machine (`txn-unchecked`).
        workload::check_back_probe(ctx.clone(), 4, Duration::from_secs(4)).await;
    }
    let drain = Duration::from_secs(opts.drain_s);
    let drained = workload::drained(ctx, Duration::from_secs(6));
    if tokio::time::timeout(drain, drained).await.is_err() {
        return Ok(Some(format!(
            "consumers did not drain within {drain:?} of healing"
        )));
    }
    Ok(None)
}

async fn drive(
    opts: &Opts,
    kinds: Vec<Kind>,
    net: &Net,
    db: &Mutex<Db>,
    dir: &std::path::Path,
) -> anyhow::Result<Recorded> {
    if let Err(e) = db::wait_led(opts.nodes, opts.groups, Duration::from_secs(60)).await {
        let crashed = db.lock().unwrap().crashed();
        anyhow::bail!("{e:#}; nodes that exited: {crashed:?} (see their logs)");
    }
    db::fifo_group(opts.nodes, NAMES.fifo_group).await?;
    let ctx = client_ctx(opts);
    let mut python = start_python(opts, net, dir)?;
    let stops = Stops {
        producers: Arc::new(AtomicBool::new(false)),
        consumers: Arc::new(AtomicBool::new(false)),
    };
    let mut tasks = start_clients(opts, &ctx, &stops);
    // Scheduled messages and recalls on the plain topic (issue 14). With stepped clocks,
    // cluster time may run ahead of the client's by what it slewed toward a stepped leader
    // (1 ms/s at most): early-delivery allows that.
    let slack = if kinds.contains(&Kind::Clock) {
        Duration::from_millis(200 + opts.time_s * 2)
    } else {
        Duration::ZERO
    };
    // Not with retention: the observer tells deleted messages by the offset of their send
    // receipt, and a scheduled message has none until it is delivered.
    if opts.retention_s.is_none() {
        tasks.push(tokio::spawn(workload::schedule(
            ctx.clone(),
            "s0".into(),
            slack,
            opts.seed ^ 41,
            stops.producers.clone(),
        )));
    }
    // Transactions (issue 15, W5), half of them left to the check-back; not with retention
    // either: a committed message has no send receipt offset.
    if opts.retention_s.is_none() {
        tasks.push(tokio::spawn(workload::transact(
            ctx.clone(),
            "t0".into(),
            opts.seed ^ 51,
            stops.producers.clone(),
        )));
    }
    // Watches what retention deletes until the drain is over (the drain does not wait for it).
    let observed = Arc::new(AtomicBool::new(false));
    let observer = opts.retention_s.map(|secs| {
        let age = Duration::from_secs_f64(secs);
        tokio::spawn(crate::retention::observe(
            ctx.clone(),
            age,
            observed.clone(),
        ))
    });

    let faults = Mutex::new(Vec::new());
    let mut nemesis = Nemesis {
        kinds,
        quiet_ms: opts.quiet_ms,
        hold_ms: opts.hold_ms,
        net,
        db,
        nodes: opts.nodes,
        rng: SmallRng::seed_from_u64(opts.seed ^ 0x6e6d_7369),
    };
    let until = opts.time_s * 1_000_000;
    let nemesis_result = tokio::select! {
        r = nemesis.run(|| ctx.now(), until, &faults) => r,
        _ = watch_crashes(db) => Ok(()),
    };
    let mut unfinished = nemesis_result
        .err()
        .map(|e| format!("the nemesis failed: {e:#}"));
    while ctx.now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut harness = crash_anomalies(db);
    stops.producers.store(true, Ordering::SeqCst);
    if let Some(why) = heal_and_drain(opts, &ctx, net, db).await? {
        unfinished.get_or_insert(why);
    }
    stops.consumers.store(true, Ordering::SeqCst);
    observed.store(true, Ordering::SeqCst);
    for t in tasks.into_iter().chain(observer) {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let mut ops = ctx.history.lock().unwrap().clone();
    if let Some(py) = &mut python {
        let bound = Duration::from_secs(opts.drain_s + 20);
        if let Some(why) = tokio::task::block_in_place(|| py.finish(bound)) {
            unfinished.get_or_insert(why);
        }
        ops.extend(py.ops()?);
    }
    harness.extend(crash_anomalies(db));
    Ok(Recorded {
        ops,
        faults: faults.into_inner().unwrap(),
        harness,
        unfinished,
        end_us: ctx.now(),
    })
}

/// Resolves when a broker exits on its own (a crash) — never, in a good run.
async fn watch_crashes(db: &Mutex<Db>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let dead = db.lock().unwrap().any_crashed();
        if dead {
            return;
        }
    }
}

fn crash_anomalies(db: &Mutex<Db>) -> Vec<Anomaly> {
    db.lock()
        .unwrap()
        .crashed()
        .into_iter()
        .map(|(i, status)| Anomaly {
            kind: "node-crashed",
            detail: format!("n{i} exited on its own ({status}); see n{i}.log"),
        })
        .collect()
}

fn check_and_write(opts: &Opts, dir: &std::path::Path, r: &Recorded) -> anyhow::Result<Verdict> {
    let (mut anomalies, stats) = checker::messages::check(&r.ops);
    anomalies.extend(r.harness.iter().cloned());
    if stats.sent_ok == 0 || stats.received == 0 {
        anomalies.push(Anomaly {
            kind: "no-progress",
            detail: format!("the workload did nothing: {stats:?}"),
        });
    }
    let results = jsonl::results(&anomalies, stats, r.unfinished.as_deref());
    let events = jsonl::events(&r.ops, &r.faults);
    std::fs::write(dir.join("history.jsonl"), jsonl::to_jsonl(&events))?;
    std::fs::write(
        dir.join("results.json"),
        format!("{:#}\n", serde_json::to_value(&results)?),
    )?;
    let html = crate::report::render(
        &opts.name, &r.ops, &r.faults, &anomalies, &results, r.end_us,
    );
    std::fs::write(dir.join("report.html"), html)?;
    Ok(if !results.bad_anomaly_types.is_empty() {
        Verdict::Invalid(results.bad_anomaly_types.clone())
    } else if let Some(why) = &r.unfinished {
        Verdict::Unknown(why.clone())
    } else {
        Verdict::Valid
    })
}

/// Re-checks a stored run from its `history.jsonl` (and rewrites `results.json` and
/// `report.html`): the checker is pure, so this is how a checker change is tried on old runs.
pub fn recheck(dir: &std::path::Path) -> anyhow::Result<Verdict> {
    let text = std::fs::read_to_string(dir.join("history.jsonl"))?;
    let events = jsonl::parse(&text).map_err(anyhow::Error::msg)?;
    let test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("test.json"))?)?;
    let opts: Opts = serde_json::from_value(test["opts"].clone())?;
    let r = Recorded {
        ops: jsonl::ops(&events).map_err(anyhow::Error::msg)?,
        faults: jsonl::faults(&events),
        harness: Vec::new(),
        unfinished: None,
        end_us: events.last().map_or(0, |e| e.time_ns / 1000),
    };
    check_and_write(&opts, dir, &r)
}
