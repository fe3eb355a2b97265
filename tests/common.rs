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

    /// Runs `raftmq admin` against it.
    pub fn admin(&self, args: &[&str]) {
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
    let script = workspace().join("interop/python/interop_test.py");
    run_ok(
        &format!("python {}", args.join(" ")),
        Command::new(python())
            .arg(script)
            .args(args)
            .args(["--endpoint", &endpoint(port)])
            .env("HOME", std::env::temp_dir()),
    )
}
