//! Runs a simulated scenario over many seeds, each in a fresh madsim runtime on its own thread.
//!
//! Seeds come from, in order: `SIM_SEED` (replay exactly one), the regression list in
//! `simulation/regression-seeds.txt` (lines `scenario seed`), then fresh seeds from
//! `SIM_BASE_SEED` (default: derived from `GITHUB_SHA`/`CI_COMMIT`, else 1) counting up, until
//! `SIM_SEEDS` seeds ran (default 20) or `SIM_BUDGET_SECS` of wall time passed. Every failing
//! seed prints the command that replays it. The last line is `sim: <scenario>: N passed, M failed`.

use std::future::Future;
use std::time::Duration;
use std::time::Instant;

/// The result of one seed: `Ok(summary)` or `Err(what went wrong)`.
pub type RunResult = Result<String, String>;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn base_seed() -> u64 {
    if let Some(s) = env_u64("SIM_BASE_SEED") {
        return s;
    }
    for var in ["GITHUB_SHA", "CI_COMMIT"] {
        if let Ok(sha) = std::env::var(var)
            && let Ok(v) = u64::from_str_radix(&sha[..sha.len().min(12)], 16)
        {
            return v;
        }
    }
    1
}

/// Seeds that once failed for `scenario`, from the regression list.
pub fn regression_seeds(scenario: &str) -> Vec<u64> {
    let text = include_str!("../regression-seeds.txt");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(name), Some(seed)) if name == scenario => seed.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// What a failing seed leaves behind: the history (one JSON op per line) and the checker's
/// results (Jepsen's layout).
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    /// `history.jsonl`.
    pub history_jsonl: String,
    /// `results.json`.
    pub results_json: String,
}

thread_local! {
    static ARTIFACTS: std::cell::RefCell<Option<Artifacts>> = const { std::cell::RefCell::new(None) };
}

/// Called by a scenario (on the seed's thread) before it returns a failure.
pub fn set_artifacts(history_jsonl: String, results_json: String) {
    ARTIFACTS.with(|a| {
        *a.borrow_mut() = Some(Artifacts {
            history_jsonl,
            results_json,
        })
    });
}

/// Runs one seed in a fresh runtime with a virtual-time limit; panics become failures.
pub fn run_seed<F, Fut>(seed: u64, time_limit: Duration, scenario: F) -> RunResult
where
    F: FnOnce(u64) -> Fut + Send + 'static,
    Fut: Future<Output = RunResult> + 'static,
{
    run_seed_with_artifacts(seed, time_limit, scenario).0
}

/// [`run_seed`], also returning what the scenario left with [`set_artifacts`].
pub fn run_seed_with_artifacts<F, Fut>(
    seed: u64,
    time_limit: Duration,
    scenario: F,
) -> (RunResult, Option<Artifacts>)
where
    F: FnOnce(u64) -> Fut + Send + 'static,
    Fut: Future<Output = RunResult> + 'static,
{
    let handle = std::thread::spawn(move || {
        if std::env::var("RUST_LOG").is_ok() {
            // A plain synchronous subscriber: the simulator forbids background threads.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .try_init();
        }
        let mut rt =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.set_time_limit(time_limit);
        let r = rt.block_on(scenario(seed));
        (r, ARTIFACTS.with(|a| a.borrow_mut().take()))
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            (Err(format!("panicked: {msg}")), None)
        }
    }
}

/// Where a failing seed's artifacts go: `target/sim-failures/<scenario>-<seed>/`.
fn write_artifacts(scenario: &str, seed: u64, a: &Artifacts) -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sim-failures");
    let dir = root.join(format!("{scenario}-{seed}"));
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(dir.join("history.jsonl"), &a.history_jsonl).ok()?;
    std::fs::write(dir.join("results.json"), &a.results_json).ok()?;
    Some(dir)
}

/// Sweeps seeds for `scenario` (see the module docs) and fails the test if any seed failed.
pub fn sweep<F, Fut>(scenario_name: &str, test_name: &str, time_limit: Duration, scenario: F)
where
    F: Fn(u64) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = RunResult> + 'static,
{
    let mut seeds: Vec<u64> = Vec::new();
    let single = env_u64("SIM_SEED");
    if let Some(s) = single {
        seeds.push(s);
    } else {
        seeds.extend(regression_seeds(scenario_name));
    }
    let fresh = if single.is_some() {
        0
    } else {
        env_u64("SIM_SEEDS").unwrap_or(20)
    };
    let budget = env_u64("SIM_BUDGET_SECS").map(Duration::from_secs);
    let base = base_seed();
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut failures = Vec::new();
    let mut run = |seed: u64| {
        let t = Instant::now();
        let (result, artifacts) = run_seed_with_artifacts(seed, time_limit, scenario);
        match result {
            Ok(summary) => {
                passed += 1;
                if std::env::var("SIM_VERBOSE").is_ok() {
                    println!(
                        "seed {seed}: ok in {:.2}s: {summary}",
                        t.elapsed().as_secs_f64()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                println!("SIM FAILURE {scenario_name} seed={seed}: {e}");
                println!(
                    "  replay: SIM_SEED={seed} RUSTFLAGS=\"--cfg madsim\" cargo test --profile sim -p simulation --test sim {test_name} -- --nocapture"
                );
                if let Some(dir) = artifacts.and_then(|a| write_artifacts(scenario_name, seed, &a))
                {
                    println!("  history and results: {}", dir.display());
                }
                failures.push(seed);
            }
        }
    };
    for s in seeds {
        run(s);
    }
    for i in 0..fresh {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        run(base.wrapping_add(i));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sim: {scenario_name}: {passed} passed, {failed} failed ({:.1} s, {:.2} seeds/s)",
        secs,
        (passed + failed) as f64 / secs.max(1e-9)
    );
    assert!(
        failures.is_empty(),
        "{scenario_name}: failing seeds {failures:?}"
    );
}
