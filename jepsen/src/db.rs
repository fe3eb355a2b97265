//! The cluster under test: a `raftmq nameserver` and N `raftmq broker` processes, each in its
//! own namespace, with data directories in the run's store, logs `nX.log` (appended across
//! restarts), and — when the clock nemesis is on — libfaketime preloaded with a per-node
//! offset file the nemesis rewrites while the process runs. Kill, pause and resume signal the
//! broker's own PID (`ip netns exec` and `env` exec, so the child's PID is the broker's).

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use raftmq_proto::admin as pb;
use raftmq_proto::admin::admin_client::AdminClient;

use crate::disk::SmallDisks;
use crate::net::NAMESERVER_HOST;
use crate::net::Net;

/// The client (v2) port of every node.
pub const CLIENT_PORT: u16 = 8081;
/// The Raft port of every node.
pub const RAFT_PORT: u16 = 8091;
/// The nameserver's port.
pub const NAMESERVER_PORT: u16 = 9876;

/// Where libfaketime lives (Debian's `libfaketime` package).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Processes of one run.
pub struct Db {
    bin: PathBuf,
    dir: PathBuf,
    nodes: usize,
    faketime: bool,
    lossy_disk: bool,
    /// Per-node tmpfs data directories (the disk-full nemesis).
    disks: Option<SmallDisks>,
    nameserver: Option<Child>,
    brokers: Vec<Option<Child>>,
    paused: Vec<bool>,
}

/// Node `i`'s client endpoint.
pub fn endpoint(i: usize) -> String {
    format!("{}:{CLIENT_PORT}", Net::ip(i))
}

/// The nameserver's endpoint (what clients are given).
pub fn nameserver() -> String {
    format!("{}:{NAMESERVER_PORT}", Net::ip(NAMESERVER_HOST as usize))
}

impl Db {
    /// Writes the configuration of `nodes` nodes hosting `groups` 3-replica (or all-node)
    /// groups with preferred leaders spread over the nodes.
    /// With `lossy_disk`, brokers keep unsynced writes in memory (`--test-lossy-disk`), so a
    /// kill is a power loss.
    /// With `opts.retention_s`, messages are kept that long, in 128 KiB segments, with a
    /// snapshot every 200 entries (only what a snapshot covers is deleted).
    pub fn new(
        bin: &Path,
        dir: &Path,
        opts: &crate::run::Opts,
        faketime: bool,
        lossy_disk: bool,
        small_disks: bool,
    ) -> anyhow::Result<Self> {
        let (nodes, groups) = (opts.nodes, opts.groups);
        let replicas = nodes.min(5);
        let node_list: String = (1..=nodes)
            .map(|i| {
                format!(
                    "[[nodes]]\nid = {i}\nraft = \"{}:{RAFT_PORT}\"\nclient = \"{}\"\n",
                    Net::ip(i),
                    endpoint(i)
                )
            })
            .collect();
        let groups: String = (1..=groups)
            .map(|g| {
                let members: Vec<String> = (1..=replicas).map(|m| m.to_string()).collect();
                format!(
                    "[[groups]]\nid = {g}\nmembers = [{}]\npreferred_leader = {}\n",
                    members.join(", "),
                    (g as usize - 1) % replicas + 1
                )
            })
            .collect();
        let _ = std::fs::create_dir_all(dir);
        let secret = dir.join("cluster.secret");
        // Any 16+ characters; unique per run so runs cannot talk to each other.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let _ = std::fs::write(
            &secret,
            format!("jepsen-{}-{nonce:032x}", std::process::id()),
        );
        let disks = small_disks
            .then(|| SmallDisks::mount(dir, nodes))
            .transpose()?;
        let mut storage = String::new();
        if small_disks {
            storage += &format!("min_free_mb = {}\n", crate::disk::FLOOR_MIB);
        }
        let mut retention = String::new();
        if let Some(secs) = opts.retention_s {
            storage += "segment_mb = 0.125\nsnapshot_every = 200\n";
            retention = format!(
                "[retention]\nmax_age_hours = {}\ncheck_secs = 0.5\n\n",
                secs / 3600.0
            );
        }
        if !storage.is_empty() {
            storage = format!("[storage]\n{storage}\n{retention}");
        } else {
            storage = retention;
        }
        // Check-backs as in the simulator (first after 1 s, then every second, three at
        // most, then discarded): the transactions left to them end within a run.
        let storage = format!(
            "[transactions]\ncheck_after_secs = 1\ncheck_interval_secs = 1\nmax_checks = 3\n\n{storage}"
        );
        for i in 1..=nodes {
            let toml = format!(
                "node_id = {i}\ndata_dir = \"{}\"\nlisten = \"{}\"\nraft_listen = \"{}:{RAFT_PORT}\"\nnameservers = [\"{}\"]\ncluster_secret_file = \"{}\"\n\n{storage}{node_list}\n{groups}",
                dir.join(format!("data/n{i}")).display(),
                endpoint(i),
                Net::ip(i),
                nameserver(),
                secret.display()
            );
            let _ = std::fs::write(dir.join(format!("n{i}.toml")), toml);
            let _ = std::fs::write(dir.join(format!("n{i}.clock")), "+0\n");
        }
        Ok(Db {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            nodes,
            faketime,
            lossy_disk,
            disks,
            nameserver: None,
            brokers: (0..nodes).map(|_| None).collect(),
            paused: vec![false; nodes],
        })
    }

    fn spawn(
        &self,
        ns: &str,
        log: &str,
        args: &[String],
        clock: Option<usize>,
    ) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(&self.bin).args(args);
        if let Some(i) = clock {
            // Wall clock only: CLOCK_MONOTONIC (timers, timeouts) stays true, as with an NTP
            // step. The file is re-read at most once a second.
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", self.clock_file(i))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}.clock"))
    }

    /// Starts the nameserver and every broker, and waits until every group has a leader.
    pub fn start(&mut self, net: &Net) -> anyhow::Result<()> {
        let secret = self.dir.join("cluster.secret").display().to_string();
        let args: Vec<String> = [
            "nameserver",
            "--listen",
            &nameserver(),
            "--cluster-secret-file",
            &secret,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.nameserver = Some(self.spawn(&net.ns(0), "n0.log", &args, None)?);
        for i in 1..=self.nodes {
            self.start_node(net, i)?;
        }
        Ok(())
    }

    /// Starts node `i` (1-based) if it is not running.
    pub fn start_node(&mut self, net: &Net, i: usize) -> anyhow::Result<()> {
        if self.brokers[i - 1].is_some() {
            return Ok(());
        }
        let cfg = self.dir.join(format!("n{i}.toml")).display().to_string();
        let mut args = vec!["broker".to_string(), "-c".into(), cfg];
        if self.lossy_disk {
            args.push("--test-lossy-disk".into());
        }
        let clock = self.faketime.then_some(i);
        self.brokers[i - 1] = Some(self.spawn(&net.ns(i), &format!("n{i}.log"), &args, clock)?);
        self.paused[i - 1] = false;
        Ok(())
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.brokers[i - 1] {
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGKILLs node `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.brokers[i - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused[i - 1] = false;
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.paused[i - 1] = true;
    }

    /// SIGCONTs node `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.paused[i - 1] = false;
    }

    /// Sets node `i`'s wall-clock offset (seconds, may be negative).
    pub fn set_clock(&self, i: usize, offset_s: f64) -> anyhow::Result<()> {
        if !self.faketime {
            bail!("the clock nemesis needs the nodes started with libfaketime");
        }
        let tmp = self.dir.join(format!("n{i}.clock.tmp"));
        std::fs::write(&tmp, format!("{offset_s:+.3}\n"))?;
        std::fs::rename(&tmp, self.clock_file(i))?;
        Ok(())
    }

    /// Fills node `i`'s disk below the free-space floor; returns the MiB left.
    pub fn fill_disk(&self, i: usize) -> anyhow::Result<u64> {
        match &self.disks {
            Some(d) => d.fill(i),
            None => bail!("the disk-full nemesis needs the nodes on small disks"),
        }
    }

    /// Frees node `i`'s disk.
    pub fn free_disk(&self, i: usize) {
        if let Some(d) = &self.disks {
            d.unfill(i);
        }
    }

    /// Brings every node back: resumed, restarted if dead, clocks true, disks freed.
    pub fn heal(&mut self, net: &Net) -> anyhow::Result<()> {
        if let Some(d) = &self.disks {
            d.unfill_all();
        }
        for i in 1..=self.nodes {
            if self.paused[i - 1] {
                self.resume(i);
            }
            if self.faketime {
                self.set_clock(i, 0.0)?;
            }
            let dead = match &mut self.brokers[i - 1] {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if dead {
                self.brokers[i - 1] = None;
                self.start_node(net, i)?;
            }
        }
        Ok(())
    }

    /// True if a broker exited on its own (the exit status stays for [`Db::crashed`]).
    pub fn any_crashed(&mut self) -> bool {
        self.brokers
            .iter_mut()
            .flatten()
            .any(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Nodes that exited on their own (a crash, not a kill by the nemesis).
    pub fn crashed(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, b) in self.brokers.iter_mut().enumerate() {
            if let Some(c) = b
                && let Ok(Some(status)) = c.try_wait()
            {
                out.push((i + 1, status.to_string()));
                *b = None;
            }
        }
        out
    }

    /// Stops everything (SIGKILL: the data is thrown away or kept for reading, not reused).
    pub fn stop(&mut self) {
        for i in 1..=self.nodes {
            if self.paused[i - 1] {
                self.resume(i);
            }
            self.kill(i);
        }
        if let Some(mut c) = self.nameserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = &mut self.disks {
            d.unmount();
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Each reachable node's view: (group, leader id, term). Called from the client namespace.
pub async fn views(nodes: usize) -> Vec<Vec<(u64, u64, u64)>> {
    let mut out = Vec::new();
    for i in 1..=nodes {
        let ep = format!("http://{}", endpoint(i));
        let t = Duration::from_millis(700);
        if let Ok(Ok(mut c)) = tokio::time::timeout(t, AdminClient::connect(ep)).await
            && let Ok(Ok(s)) = tokio::time::timeout(t, c.status(pb::StatusRequest {})).await
        {
            let v = s
                .into_inner()
                .replicas
                .iter()
                .map(|r| (r.group, r.leader, r.term))
                .collect();
            out.push(v);
        }
    }
    out
}

/// The node leading `group` in the highest term any node reports.
pub async fn leader_of(nodes: usize, group: u64) -> Option<usize> {
    views(nodes)
        .await
        .into_iter()
        .flatten()
        .filter(|(g, l, _)| *g == group && *l != 0)
        .max_by_key(|(_, _, t)| *t)
        .map(|(_, l, _)| l as usize)
}

/// Waits until every group has a leader every reachable node agrees on.
pub async fn wait_led(nodes: usize, groups: u64, bound: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let v = views(nodes).await;
        let led = (1..=groups).all(|g| {
            v.iter()
                .any(|view| view.iter().any(|(vg, l, _)| *vg == g && *l != 0))
        });
        if led && !v.is_empty() {
            return Ok(());
        }
        if start.elapsed() > bound {
            bail!("not every group has a leader after {bound:?}: {v:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes a consumer group orderly (FIFO) on every Raft group, through any node.
pub async fn fifo_group(nodes: usize, name: &str) -> anyhow::Result<()> {
    let mut last = String::new();
    for attempt in 0..50 {
        let ep = format!("http://{}", endpoint(attempt % nodes + 1));
        match AdminClient::connect(ep).await {
            Ok(mut c) => {
                let spec = pb::GroupSpec {
                    name: name.to_string(),
                    max_delivery_attempts: 16,
                    fifo: true,
                    retry_backoff_ms: vec![],
                    exponential: None,
                };
                match c.upsert_group(spec).await {
                    Ok(r) if r.get_ref().error.is_empty() => return Ok(()),
                    Ok(r) => last = r.into_inner().error,
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("could not make {name} orderly: {last}")
}
