//! `commit-regression`: a read of a queue's committed offset returns at least every commit
//! that completed OK before the read began (commits only move forward).

use std::collections::BTreeMap;

use super::Anomaly;
use super::Op;
use super::Result3;
use super::anomaly;

pub(super) fn check(history: &[Op], out: &mut Vec<Anomaly>) {
    let mut commits: BTreeMap<(&str, i32), Vec<(u64, i64)>> = BTreeMap::new();
    for op in history {
        if let Op::Commit {
            broker,
            queue,
            offset,
            completed,
            result: Result3::Ok,
            ..
        } = op
        {
            commits
                .entry((broker, *queue))
                .or_default()
                .push((*completed, *offset));
        }
    }
    for op in history {
        let Op::ReadCommitted {
            broker,
            queue,
            invoked,
            value,
            ..
        } = op
        else {
            continue;
        };
        let floor = commits
            .get(&(broker.as_str(), *queue))
            .into_iter()
            .flatten()
            .filter(|(c, _)| c < invoked)
            .map(|(_, o)| *o)
            .max();
        if let Some(f) = floor
            && value.is_none_or(|v| v < f)
        {
            out.push(anomaly(
                "commit-regression",
                format!("{broker}/{queue}: read {value:?} at {invoked} after a commit of {f}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn a_read_never_goes_below_an_earlier_commit() {
        // A lower commit after a higher one does not move the offset back.
        let good = vec![
            commit(2, 20),
            read(Some(2), 30),
            commit(1, 40),
            read(Some(2), 50),
        ];
        assert!(kinds(&good).is_empty(), "{:?}", kinds(&good));
        // A read that overlaps the commit may see either value.
        let racing = vec![commit(2, 20), read(None, 20)];
        assert!(kinds(&racing).is_empty());
        let bad = vec![commit(2, 20), read(Some(1), 30)];
        assert_eq!(kinds(&bad), vec!["commit-regression"]);
        let forgotten = vec![commit(2, 20), read(None, 30)];
        assert_eq!(kinds(&forgotten), vec!["commit-regression"]);
    }
}
