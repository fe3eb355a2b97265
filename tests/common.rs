//! Shared helpers for the root package's process-level tests: a `raftmq dev` child process,
//! and the official clients' locations.
#![allow(dead_code)]

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use raftmq_proto::admin::StatusRequest;
use raftmq_proto::admin::admin_client::AdminClient;

/// A `raftmq dev` process: v2 on 127.0.0.1:`port` and the next two ports, Raft on `port + 10`
/// and the next two, the nameserver on `port + 20`.
pub struct Dev {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub extra: Vec<String>,
}

pub fn endpoint(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

impl Dev {
    /// Starts it and waits until the group has a leader.
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> Dev {
        let mut d = Dev {
            child: None,
            port,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        d.restart();
        d
    }

    /// (Re)starts the process on the same data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        // Kept after the test (temp dirs are not) so a CI failure can be read.
        let logs = workspace().join("target/test-logs");
        let _ = std::fs::create_dir_all(&logs);
        let log = std::fs::File::create(logs.join(format!(
            "dev-{}-{}.log",
            self.port,
            std::process::id()
        )))
        .ok();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_raftmq"));
        cmd.args(["dev", "--data-dir"])
            .arg(self.dir.join("data"))
            .args([
                "--listen",
                &endpoint(self.port),
                "--raft-port",
                &(self.port + 10).to_string(),
                "--nameserver",
                &endpoint(self.port + 20),
            ])
            .args(&self.extra)
            .stdout(Stdio::null());
        match log {
            Some(f) => cmd.stderr(f),
            None => cmd.stderr(Stdio::null()),
        };
        self.child = Some(cmd.spawn().expect("spawn raftmq dev"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ep = format!("http://{}", endpoint(self.port));
        let start = Instant::now();
        rt.block_on(async {
            loop {
                if let Ok(mut c) = AdminClient::connect(ep.clone()).await
                    && let Ok(s) = c.status(StatusRequest {}).await
                    && s.get_ref().replicas.iter().any(|r| r.leader != 0)
                {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "raftmq dev did not become ready on {ep}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    /// Stops it with SIGINT (Ctrl-C) and checks it exits cleanly.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "raftmq dev exited with {status} after Ctrl-C"
                );
                return;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("raftmq dev did not stop within 20 s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The exit status, once the process has exited by itself.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// Its log file (stderr), under target/test-logs.
    pub fn log_path(&self) -> PathBuf {
        workspace().join("target/test-logs").join(format!(
            "dev-{}-{}.log",
            self.port,
            std::process::id()
        ))
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Runs `raftmq admin` against it; returns what it printed.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_raftmq"))
            .args(["admin", "--endpoint", &endpoint(self.port)])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "raftmq admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `raftmq admin` against it, expecting a refusal; returns what it printed on stderr.
    pub fn admin_refused(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_raftmq"))
            .args(["admin", "--endpoint", &endpoint(self.port)])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "raftmq admin {args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with rocketmq-python-client 5.1.2 (installed by scripts/test.sh).
pub fn python() -> PathBuf {
    let p = std::env::var_os("RAFTMQ_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/interop-venv/bin/python"));
    assert!(
        p.exists(),
        "{} not found: run ./scripts/test.sh (it installs rocketmq-python-client into target/interop-venv) or set RAFTMQ_PYTHON",
        p.display()
    );
    p
}

/// The official Rust client scenario binary (built by scripts/test.sh).
pub fn rust_official() -> PathBuf {
    let p = std::env::var_os("RAFTMQ_RUST_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace().join("target/interop-rust/release/raftmq-interop-rust-official")
        });
    assert!(
        p.exists(),
        "{} not found: run ./scripts/test.sh (it builds interop/rust-official) or set RAFTMQ_RUST_CLIENT",
        p.display()
    );
    p
}

/// Runs interop/node/interop_test.js on the official Node.js client (installed under
/// target/interop-node by scripts/test.sh) with `home` as its HOME (where it logs).
pub fn node_scenario(home: &Path, args: &[&str]) -> Output {
    let modules = std::env::var_os("RAFTMQ_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/interop-node/node_modules"));
    assert!(
        modules.join("rocketmq-client-nodejs").exists(),
        "{} has no rocketmq-client-nodejs: run ./scripts/test.sh (it installs interop/node) or set RAFTMQ_NODE_MODULES",
        modules.display()
    );
    run_ok(
        &format!("node {}", args.join(" ")),
        Command::new("node")
            .arg(workspace().join("interop/node/interop_test.js"))
            .args(args)
            .env("NODE_PATH", modules)
            .env("HOME", home),
    )
}

/// Asserts that an official client's log at `path` exists, shows it started (`started`), and
/// holds no line with any of `bad` (its warning and error markers).
pub fn assert_clean_log(what: &str, path: &Path, started: &str, bad: &[&str]) {
    let log = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{what}'s log {}: {e}", path.display()));
    assert!(log.contains(started), "{what}'s log:\n{log}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| bad.iter().any(|b| l.contains(b)))
        .collect();
    assert!(lines.is_empty(), "{what} logged:\n{}", lines.join("\n"));
}

/// Runs a command, prints its output, and asserts it succeeded.
pub fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("--- {what}\n{stdout}");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// Runs an interop_test.py scenario against `port`.
pub fn python_scenario(port: u16, args: &[&str]) -> Output {
    python_scenario_in(&std::env::temp_dir(), port, args)
}

/// Runs an interop_test.py scenario against `port` with `home` as its HOME (the SDK logs to
/// `home/logs/rocketmq_python/rocketmq_client.log`).
pub fn python_scenario_in(home: &Path, port: u16, args: &[&str]) -> Output {
    let script = workspace().join("interop/python/interop_test.py");
    run_ok(
        &format!("python {}", args.join(" ")),
        Command::new(python())
            .arg(script)
            .args(args)
            .args(["--endpoint", &endpoint(port)])
            .env("HOME", home),
    )
}

/// A real cluster: a nameserver on 127.0.0.1:`base+90` and three `raftmq broker` processes on
/// 127.0.0.1, .2 and .3 (v2 on `base`, Raft on `base+1`), hosting `groups` 3-replica groups
/// whose preferred leaders are spread over the nodes.
pub struct Cluster {
    dir: PathBuf,
    base: u16,
    nameserver: Option<Child>,
    brokers: Vec<Option<Child>>,
}

impl Cluster {
    pub fn start(dir: &Path, base: u16, groups: u64) -> Cluster {
        Cluster::start_first(dir, base, groups, 3)
    }

    /// A three-node cluster of which only the first `running` nodes are started (the others
    /// with [`Cluster::restart`]), once they lead every group.
    pub fn start_first(dir: &Path, base: u16, groups: u64, running: usize) -> Cluster {
        let mut c = Cluster::configure(dir, base, groups);
        for i in 0..running {
            c.restart(i);
        }
        c.wait_all_led();
        c
    }

    /// A three-node cluster's configuration and its nameserver, no broker started yet.
    pub fn configure(dir: &Path, base: u16, groups: u64) -> Cluster {
        Cluster::configure_with(dir, base, groups, |g| (g - 1) % 3 + 1, "")
    }

    /// [`Cluster::configure`] with group `g` preferring node `preferred(g)` as its leader and
    /// `extra` added to every node's configuration.
    pub fn configure_with(
        dir: &Path,
        base: u16,
        groups: u64,
        preferred: impl Fn(u64) -> u64,
        extra: &str,
    ) -> Cluster {
        let nodes: String = (1..=3)
            .map(|i| format!("[[nodes]]\nid = {i}\nraft = \"127.0.0.{i}:{}\"\nclient = \"127.0.0.{i}:{base}\"\n", base + 1))
            .collect();
        let groups: String = (1..=groups)
            .map(|g| {
                format!(
                    "[[groups]]\nid = {g}\nmembers = [1, 2, 3]\npreferred_leader = {}\n",
                    preferred(g)
                )
            })
            .collect();
        let secret = dir.join("cluster.secret");
        std::fs::write(
            &secret,
            format!("test-secret-{base}-{}", std::process::id()),
        )
        .unwrap();
        for i in 1..=3 {
            let toml = format!(
                "node_id = {i}\ndata_dir = \"{}\"\nlisten = \"127.0.0.{i}:{base}\"\nraft_listen = \"127.0.0.{i}:{}\"\nnameservers = [\"127.0.0.1:{}\"]\ncluster_secret_file = \"{}\"\n\n{nodes}\n{groups}\n{extra}",
                dir.join(format!("n{i}")).display(),
                base + 1,
                base + 90,
                secret.display()
            );
            std::fs::write(dir.join(format!("n{i}.toml")), toml).unwrap();
        }
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            base,
            nameserver: None,
            brokers: vec![None, None, None],
        };
        c.nameserver = Some(c.spawn(
            "nameserver",
            &[
                "nameserver",
                "--listen",
                &format!("127.0.0.1:{}", base + 90),
                "--cluster-secret-file",
                &secret.display().to_string(),
            ],
        ));
        c
    }

    fn log_file(&self, name: &str) -> PathBuf {
        workspace().join(format!(
            "target/test-logs/{name}-{}-{}.log",
            self.base,
            std::process::id()
        ))
    }

    /// Node `i`'s (0-based) log, all its lives.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_file(&format!("broker{}", i + 1))).unwrap_or_default()
    }

    /// Waits up to `limit` for node `i` to exit by itself: its exit status (it is then
    /// stopped), or `None` if it still runs.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            let status = self.brokers[i]
                .as_mut()
                .expect("started")
                .try_wait()
                .unwrap();
            if status.is_some() {
                self.brokers[i] = None;
                return status;
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Child {
        let path = self.log_file(name);
        let _ = std::fs::create_dir_all(path.parent().unwrap());
        // Appended, not truncated: a restarted node's log follows its previous life.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_raftmq"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn raftmq")
    }

    /// The nameserver's endpoint (what clients are given).
    pub fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.base + 90)
    }

    /// Node `i`'s (0-based) client endpoint.
    pub fn node(&self, i: usize) -> String {
        format!("127.0.0.{}:{}", i + 1, self.base)
    }

    /// (Re)starts node `i` (0-based).
    pub fn restart(&mut self, i: usize) {
        self.restart_with(i, &[]);
    }

    /// (Re)starts node `i` (0-based) with extra `raftmq broker` arguments.
    pub fn restart_with(&mut self, i: usize, extra: &[&str]) {
        assert!(self.brokers[i].is_none());
        let cfg = self.dir.join(format!("n{}.toml", i + 1));
        let mut args = vec!["broker", "-c", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.brokers[i] = Some(self.spawn(&format!("broker{}", i + 1), &args));
    }

    /// Node `i`'s (0-based) data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}", i + 1))
    }

    /// Runs `raftmq admin --endpoint <node i> --cluster-secret-file <the cluster's> ARGS`;
    /// returns (success, stdout + stderr).
    pub fn admin(&self, i: usize, args: &[&str]) -> (bool, String) {
        let secret = self.dir.join("cluster.secret");
        self.admin_raw(
            i,
            &[&["--cluster-secret-file", secret.to_str().unwrap()], args].concat(),
        )
    }

    /// Runs `raftmq admin --endpoint <node i> ARGS`; returns (success, stdout + stderr).
    pub fn admin_raw(&self, i: usize, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_raftmq"))
            .args(["admin", "--endpoint", &self.node(i)])
            .args(args)
            .output()
            .expect("run raftmq admin");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// SIGKILLs node `i`.
    /// The process ids of the nameserver and the running brokers, with a name each.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .nameserver
            .iter()
            .map(|c| ("nameserver".to_string(), c.id()))
            .collect();
        for (i, b) in self.brokers.iter().enumerate() {
            if let Some(c) = b {
                out.push((format!("broker {}", i + 1), c.id()));
            }
        }
        out
    }

    /// True while the nameserver and every started broker run.
    pub fn all_alive(&mut self) -> bool {
        let ns = self
            .nameserver
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none());
        ns && self
            .brokers
            .iter_mut()
            .flatten()
            .all(|c| c.try_wait().unwrap().is_none())
    }

    pub fn kill(&mut self, i: usize) {
        let mut c = self.brokers[i].take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERMs node `i` and checks it exits cleanly.
    pub fn terminate(&mut self, i: usize) {
        let mut c = self.brokers[i].take().expect("running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                assert!(
                    s.success(),
                    "broker {} exited with {s} after SIGTERM",
                    i + 1
                );
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "broker {} did not stop after SIGTERM",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Each live node's view: group -> (leader node id, term).
    fn views(&self) -> Vec<Vec<(u64, u64, u64)>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            for i in 0..3 {
                if self.brokers[i].is_none() {
                    continue;
                }
                if let Ok(Ok(mut c)) = tokio::time::timeout(
                    Duration::from_secs(1),
                    AdminClient::connect(format!("http://{}", self.node(i))),
                )
                .await
                    && let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(1), c.status(StatusRequest {}))
                            .await
                {
                    out.push(
                        s.into_inner()
                            .replicas
                            .iter()
                            .map(|r| (r.group, r.leader, r.term))
                            .collect(),
                    );
                }
            }
            out
        })
    }

    /// The 0-based node leading `group`, as the live nodes agree.
    pub fn leader_of(&self, group: u64) -> Option<usize> {
        self.views()
            .iter()
            .flatten()
            .filter(|(g, l, _)| *g == group && *l != 0)
            .max_by_key(|(_, _, t)| *t)
            .map(|(_, l, _)| *l as usize - 1)
            .filter(|i| self.brokers[*i].is_some())
    }

    /// Waits until every group has a live leader.
    pub fn wait_all_led(&self) {
        let start = Instant::now();
        loop {
            let views = self.views();
            let groups: std::collections::BTreeSet<u64> =
                views.iter().flatten().map(|(g, _, _)| *g).collect();
            if !views.is_empty() && groups.iter().all(|g| self.leader_of(*g).is_some()) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cluster did not elect leaders"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self
            .brokers
            .iter_mut()
            .chain(std::iter::once(&mut self.nameserver))
        {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs an interop_test.py scenario against an explicit endpoint, in the background.
pub fn python_background(endpoint: &str, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let script = workspace().join("interop/python/interop_test.py");
    let mut cmd = Command::new(python());
    cmd.arg(script)
        .args(args)
        .args(["--endpoint", endpoint])
        .env("HOME", std::env::temp_dir());
    let what = format!("python {}", args.join(" "));
    std::thread::spawn(move || run_ok(&what, &mut cmd))
}

/// Every message a fresh receive group `group` gets from `topic` (acking each), until `want`
/// are in or three receives of 20 s come back empty. With `allow_stale`, an ack refused as
/// stale is accepted: retention may delete a message between its receipt and its ack.
pub async fn receive_all(
    config: raftmq_client::ClientConfig,
    topic: &str,
    group: &str,
    want: usize,
    allow_stale: bool,
) -> std::collections::BTreeSet<String> {
    let c = raftmq_client::SimpleConsumer::builder(config, group)
        .subscribe(topic, raftmq_client::Filter::All)
        .start()
        .await
        .unwrap();
    let mut got = std::collections::BTreeSet::new();
    let mut idle = 0;
    while got.len() < want && idle < 3 {
        let msgs = c
            .receive(64, Duration::from_secs(20))
            .await
            .unwrap_or_default();
        if msgs.is_empty() {
            idle += 1;
        }
        for m in msgs {
            if let Err(e) = c.ack(&m).await {
                assert!(
                    allow_stale && e.to_string().contains("stale"),
                    "ack {}: {e}",
                    m.message_id
                );
            }
            got.insert(m.message_id.clone());
        }
    }
    c.shutdown().await;
    got
}
