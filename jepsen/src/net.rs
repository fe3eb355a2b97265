//! The network of a run: a "switch" namespace holding a bridge, one namespace per node
//! (`<run>-n1`…, at 10.77.0.i), one for the nameserver (`<run>-n0`, 10.77.0.10) and one for
//! the clients (`<run>-c`, 10.77.0.100). Nothing is created in the root namespace and no
//! namespace has a route out, so traffic stays inside the run. Partitions and packet loss are
//! iptables rules in the receiving node's namespace that match only node-to-node source
//! addresses: the clients and the nameserver are never cut off (Jepsen's control node).
//! Dropping the namespaces removes the veths, the bridge and every rule.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::process::Command;

use anyhow::Context;
use anyhow::bail;

/// The subnet every run uses (namespaces keep runs apart).
pub const SUBNET: &str = "10.77.0";
/// Host part of the nameserver's address.
pub const NAMESERVER_HOST: u8 = 10;
/// Host part of the client namespace's address.
pub const CLIENT_HOST: u8 = 100;

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why namespaces cannot be used here, if they cannot (not root, no `ip`, no `iptables`).
pub fn unavailable() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, iptables)".into());
    }
    for tool in ["ip", "iptables"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    let probe = format!("jprobe{}", std::process::id());
    if sh(&["ip", "netns", "add", &probe]).is_err() {
        return Some("cannot create a network namespace".into());
    }
    let _ = sh(&["ip", "netns", "del", &probe]);
    None
}

/// The namespaces of one run.
pub struct Net {
    run: String,
    nodes: usize,
    up: bool,
}

/// Which node drops packets from which others (receiver -> senders).
pub type Grudge = BTreeMap<usize, BTreeSet<usize>>;

impl Net {
    /// Node `i`'s (1-based) address.
    pub fn ip(host: usize) -> String {
        format!("{SUBNET}.{host}")
    }

    /// The namespace of node `i` (0 is the nameserver's).
    pub fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.run)
    }

    /// The clients' namespace.
    pub fn client_ns(&self) -> String {
        format!("{}-c", self.run)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.run)
    }

    /// Creates the bridge and `nodes` node namespaces (plus nameserver and clients).
    pub fn create(run: &str, nodes: usize) -> anyhow::Result<Net> {
        let mut net = Net {
            run: run.to_string(),
            nodes,
            up: true,
        };
        let sw = net.switch();
        sh(&["ip", "netns", "add", &sw])?;
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        let mut hosts: Vec<(String, usize)> = (1..=nodes).map(|i| (net.ns(i), i)).collect();
        hosts.push((net.ns(0), NAMESERVER_HOST as usize));
        hosts.push((net.client_ns(), CLIENT_HOST as usize));
        for (port, (ns, host)) in hosts.iter().enumerate() {
            if let Err(e) = net.attach(ns, *host, port) {
                net.destroy();
                return Err(e);
            }
        }
        net.up = true;
        Ok(net)
    }

    fn attach(&self, ns: &str, host: usize, port: usize) -> anyhow::Result<()> {
        let sw = self.switch();
        let port = format!("port{port}");
        sh(&["ip", "netns", "add", ns])?;
        sh(&[
            "ip", "link", "add", "veth0", "netns", ns, "type", "veth", "peer", "name", &port,
            "netns", &sw,
        ])?;
        sh(&["ip", "-n", &sw, "link", "set", &port, "master", "br0"])?;
        sh(&["ip", "-n", &sw, "link", "set", &port, "up"])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        let addr = format!("{}/24", Net::ip(host));
        sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", "veth0"])?;
        sh(&["ip", "-n", ns, "link", "set", "veth0", "up"])
    }

    /// Runs iptables in node `i`'s namespace.
    fn iptables(&self, i: usize, rule: &[&str]) -> anyhow::Result<()> {
        let ns = self.ns(i);
        let mut args = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
        args.extend_from_slice(rule);
        sh(&args)
    }

    /// Cuts links: every receiver drops what its grudge senders send it.
    pub fn partition(&self, grudge: &Grudge) -> anyhow::Result<()> {
        for (to, froms) in grudge {
            for from in froms {
                let src = Net::ip(*from);
                self.iptables(*to, &["-A", "INPUT", "-s", &src, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    /// Node `to` drops `percent`% of the packets every other node sends it.
    pub fn lossy(&self, to: usize, percent: u32) -> anyhow::Result<()> {
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        for from in (1..=self.nodes).filter(|f| *f != to) {
            let src = Net::ip(from);
            self.iptables(
                to,
                &[
                    "-A",
                    "INPUT",
                    "-s",
                    &src,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every rule on every node.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 1..=self.nodes {
            self.iptables(i, &["-F", "INPUT"])?;
        }
        Ok(())
    }

    /// Deletes every namespace of the run (and with them veths, bridge and rules).
    pub fn destroy(&mut self) {
        if !self.up {
            return;
        }
        let mut all: Vec<String> = (0..=self.nodes).map(|i| self.ns(i)).collect();
        all.push(self.client_ns());
        all.push(self.switch());
        for ns in all {
            let _ = sh(&["ip", "netns", "del", &ns]);
        }
        self.up = false;
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Removes what runs killed before their cleanup left behind: namespaces `j<pid>-…` whose
/// `jepsen` process is gone, after SIGKILLing the processes still inside them.
pub fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix('j')
            .and_then(|r| r.split_once('-'))
            .and_then(|(p, _)| p.parse::<i32>().ok())
        else {
            continue;
        };
        // Run ids are the pid modulo 100,000; a live process with that id may own it.
        let alive = (0..=40).any(|k| {
            let p = pid + k * 100_000;
            std::path::Path::new(&format!("/proc/{p}")).exists()
                && std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.starts_with("jepsen"))
        });
        if alive {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for p in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<i32>() {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        let _ = sh(&["ip", "netns", "del", name]);
    }
}

/// Moves the calling thread into namespace `ns`. Threads it creates afterwards (a tokio
/// runtime's workers) start there too.
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}
