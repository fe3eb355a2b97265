//! `jepsen`: RaftMQ's real-process chaos suite (docs/testing.md, "Real-process suite").
//!
//! - `jepsen test --nemesis partition,kill --time 120`: one run (exit 0 valid, 1 anomalies,
//!   2 unknown);
//! - `jepsen matrix`: the CI matrix of short runs, each in its own process (an `unknown` run
//!   is repeated once), ending with `jepsen: N passed, M failed`;
//! - `jepsen replay <run dir>`: the same options and seed again;
//! - `jepsen check <run dir>`: re-check a stored history and rewrite its report.

// The suite drives real processes, sockets and signals: it has no simulator build (the
// workspace's `--cfg madsim` builds compile it to a stub).
#[cfg(not(madsim))]
mod cli;
#[cfg(not(madsim))]
mod db;
#[cfg(not(madsim))]
mod disk;
#[cfg(not(madsim))]
mod nemesis;
#[cfg(not(madsim))]
mod net;
#[cfg(not(madsim))]
mod python;
#[cfg(not(madsim))]
mod report;
#[cfg(not(madsim))]
mod retention;
#[cfg(not(madsim))]
mod run;

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(madsim)]
fn main() {
    eprintln!("jepsen runs real processes; build it without --cfg madsim");
}
