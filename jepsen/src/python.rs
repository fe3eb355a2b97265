//! The workload on the official Apache RocketMQ Python client (`jepsen/python/workload.py`):
//! producer and consumer processes in the clients' namespace, each writing its operations as
//! JSON lines in the checker's `Op` shape, merged into the run's history afterwards.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use checker::messages::Op;

/// The topic and group the Python clients use (apart from the native ones).
pub const TOPIC: &str = "JPyTopic";
/// See [`TOPIC`].
pub const GROUP: &str = "JPyGroup";

/// The script, next to this crate.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/workload.py")
}

/// The Python with rocketmq-python-client 5.1.2 (scripts/test.sh installs it), if present.
pub fn default_python() -> Option<PathBuf> {
    let p = std::env::var_os("RAFTMQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python")
        });
    p.exists().then_some(p)
}

/// Running Python clients.
pub struct Python {
    dir: PathBuf,
    producers: Vec<Child>,
    consumers: Vec<Child>,
}

fn spawn(
    python: &Path,
    ns: &str,
    dir: &Path,
    name: &str,
    args: &[String],
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(python)
        .arg(script())
        .args(args)
        .arg("--out")
        .arg(dir.join(format!("{name}.jsonl")))
        // The SDK writes its own log under $HOME.
        .env("HOME", dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", python.display()))
}

impl Python {
    /// Starts `pairs` producers and consumers. `t0_ns` is the run's time zero (ns since the
    /// epoch), so their times line up with the native clients'.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        python: &Path,
        ns: &str,
        dir: &Path,
        endpoint: &str,
        pairs: u64,
        t0_ns: u128,
        seconds: u64,
        drain_s: u64,
    ) -> anyhow::Result<Python> {
        let mut py = Python {
            dir: dir.to_path_buf(),
            producers: Vec::new(),
            consumers: Vec::new(),
        };
        let common = |role: &str, k: u64| -> Vec<String> {
            [
                role,
                "--endpoint",
                endpoint,
                "--topic",
                TOPIC,
                "--group",
                GROUP,
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "--index".into(),
                k.to_string(),
                "--t0".into(),
                t0_ns.to_string(),
                "--seconds".into(),
                seconds.to_string(),
                "--drain".into(),
                drain_s.to_string(),
                "--stop".into(),
                dir.join("py.stop").display().to_string(),
                "--sends".into(),
                dir.join("py-producer-*.jsonl").display().to_string(),
            ])
            .collect()
        };
        for k in 0..pairs {
            let p = spawn(
                python,
                ns,
                dir,
                &format!("py-producer-{k}"),
                &common("producer", k),
            )?;
            py.producers.push(p);
            let c = spawn(
                python,
                ns,
                dir,
                &format!("py-consumer-{k}"),
                &common("consumer", k),
            )?;
            py.consumers.push(c);
        }
        Ok(py)
    }

    /// Waits for the producers (they stop on their own after the chaos), then tells the
    /// consumers to drain and waits for them, within `bound`. Returns why not, if not.
    pub fn finish(&mut self, bound: Duration) -> Option<String> {
        let start = Instant::now();
        let mut problem = None;
        let wait = |c: &mut Child, what: &str, problem: &mut Option<String>| loop {
            match c.try_wait() {
                Ok(Some(s)) if s.success() => return,
                Ok(Some(s)) => {
                    problem.get_or_insert(format!("python {what} exited with {s}"));
                    return;
                }
                _ if start.elapsed() > bound => {
                    let _ = c.kill();
                    let _ = c.wait();
                    problem.get_or_insert(format!("python {what} did not finish within {bound:?}"));
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        for p in &mut self.producers {
            wait(p, "producer", &mut problem);
        }
        let _ = std::fs::write(self.dir.join("py.stop"), "");
        for c in &mut self.consumers {
            wait(c, "consumer", &mut problem);
        }
        problem
    }

    /// The operations the Python clients recorded.
    pub fn ops(&self) -> anyhow::Result<Vec<Op>> {
        let mut out = Vec::new();
        for role in ["producer", "consumer"] {
            for k in 0..self.producers.len() {
                let path = self.dir.join(format!("py-{role}-{k}.jsonl"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (n, line) in text.lines().enumerate() {
                    // The last line of a killed client may be cut short.
                    match serde_json::from_str(line) {
                        Ok(op) => out.push(op),
                        Err(e) if n + 1 < text.lines().count() => {
                            anyhow::bail!("{}:{}: {e}", path.display(), n + 1)
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        for c in self.producers.iter_mut().chain(self.consumers.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
