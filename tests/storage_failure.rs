//! A replica whose storage fails takes its process down with a clear message and a non-zero
//! exit, so a supervisor restarts it, instead of leaving a zombie that answers "not the
//! leader" for ever (issue 12, "storage errors are not zombies"; a full disk is the failure
//! here — making ENOSPC recoverable without a restart is still to come). `raftmq dev` runs on a
//! 24 MiB tmpfs and is sent 64 KiB messages until the disk is full. Needs root (mount).
#![cfg(not(madsim))]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;

use common::Dev;
use common::endpoint;

/// Unmounts on drop, even when the test fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_process_with_a_clear_error() {
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("skipped: cannot mount a tmpfs here");
        return;
    }
    let _mount = Mount(mnt.clone());
    let port = 19400;
    let mut dev = Dev::start(&mnt, port, &[]);
    // Fill the disk: 1,000 × 64 KiB is far more than 24 MiB can hold, three times over.
    let _ = Command::new(env!("CARGO_BIN_EXE_raftmq"))
        .args(["produce", "--endpoints", &endpoint(port), "--topic", "Big"])
        .args(["--count", "1000", "--size", "65536"])
        .output()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = dev.exit_status() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "raftmq dev still runs 30 s after its disk filled up (a zombie)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "exited with {status}, expected a failure"
    );
    let log = std::fs::read_to_string(dev.log_path()).unwrap();
    assert!(
        log.contains("No space left on device"),
        "the cause is not in the log"
    );
    assert!(
        log.contains("stopped after a storage failure"),
        "the exit message is missing from the log:\n{}",
        &log[log.len().saturating_sub(2000)..]
    );
}
