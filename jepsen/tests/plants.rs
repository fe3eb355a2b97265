//! Every planted bug in `jepsen/plants/` still applies to the current code: the docs claim
//! the suite catches each of them, and a plant that no longer applies silently stops being
//! evidence (found this way: `fifo-out-of-order.patch` stopped applying when
//! `BrokerState::pop` was split, and nothing noticed).
#![cfg(not(madsim))]

use std::path::Path;
use std::process::Command;

#[test]
fn every_plant_applies_to_the_current_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let in_git = Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .current_dir(&root)
        .output()
        .is_ok_and(|o| o.status.success());
    if !in_git {
        println!("skipped: not a git checkout (or no git)");
        return;
    }
    let mut plants: Vec<_> = std::fs::read_dir(root.join("jepsen/plants"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    plants.sort();
    assert!(plants.len() >= 3, "plants missing: {plants:?}");
    for p in plants {
        let out = Command::new("git")
            .args(["apply", "--check"])
            .arg(&p)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} no longer applies; regenerate it (docs/testing.md, Planted bugs): {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
