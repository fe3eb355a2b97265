//! Pure checks of a Raft-level run: every acknowledged proposal is on every replica exactly
//! once at the index it was acknowledged at; nothing appears that was not proposed; an unknown
//! proposal appears at most once; replicas hold identical sequences.

use std::collections::BTreeMap;

use crate::history::Outcome;
use crate::history::Proposal;

/// One violated promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An acknowledged proposal is missing from a replica.
    Lost {
        replica: usize,
        value: String,
        index: u64,
    },
    /// A proposal appears more than once on a replica.
    Duplicate {
        replica: usize,
        value: String,
        count: usize,
    },
    /// A value appears that no client proposed, or one whose proposal definitely failed.
    Unexpected { replica: usize, value: String },
    /// An acknowledged proposal sits at another index than the one acknowledged.
    WrongIndex {
        replica: usize,
        value: String,
        acked: u64,
        actual: u64,
    },
    /// Two replicas hold different sequences.
    Divergence {
        a: usize,
        b: usize,
        first_difference: usize,
    },
}

fn show(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Checks `replicas` (each the applied `(index, value)` sequence of one replica) against the
/// client `history`.
pub fn check(history: &[Proposal], replicas: &[Vec<(u64, Vec<u8>)>]) -> Vec<Violation> {
    let mut out = Vec::new();
    let by_value: BTreeMap<&[u8], &Outcome> = history
        .iter()
        .map(|p| (p.value.as_slice(), &p.outcome))
        .collect();
    for (r, applied) in replicas.iter().enumerate() {
        let mut seen: BTreeMap<&[u8], Vec<u64>> = BTreeMap::new();
        for (index, value) in applied {
            seen.entry(value.as_slice()).or_default().push(*index);
        }
        for (value, indexes) in &seen {
            match by_value.get(value) {
                None | Some(Outcome::Fail) => out.push(Violation::Unexpected {
                    replica: r,
                    value: show(value),
                }),
                _ => {}
            }
            if indexes.len() > 1 {
                out.push(Violation::Duplicate {
                    replica: r,
                    value: show(value),
                    count: indexes.len(),
                });
            }
        }
        for p in history {
            if let Outcome::Ok(acked) = p.outcome {
                match seen.get(p.value.as_slice()) {
                    None => out.push(Violation::Lost {
                        replica: r,
                        value: show(&p.value),
                        index: acked,
                    }),
                    Some(idx) if idx[0] != acked => out.push(Violation::WrongIndex {
                        replica: r,
                        value: show(&p.value),
                        acked,
                        actual: idx[0],
                    }),
                    Some(_) => {}
                }
            }
        }
    }
    for b in 1..replicas.len() {
        if replicas[0] != replicas[b] {
            let first_difference = replicas[0]
                .iter()
                .zip(&replicas[b])
                .position(|(x, y)| x != y)
                .unwrap_or(replicas[0].len().min(replicas[b].len()));
            out.push(Violation::Divergence {
                a: 0,
                b,
                first_difference,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str, o: Outcome) -> Proposal {
        Proposal {
            value: v.as_bytes().to_vec(),
            outcome: o,
        }
    }

    fn r(items: &[(u64, &str)]) -> Vec<(u64, Vec<u8>)> {
        items
            .iter()
            .map(|(i, v)| (*i, v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn clean_run_passes() {
        let h = vec![
            p("a", Outcome::Ok(1)),
            p("b", Outcome::Info),
            p("c", Outcome::Info),
        ];
        let rep = r(&[(1, "a"), (2, "b")]);
        assert!(check(&h, &[rep.clone(), rep.clone(), rep]).is_empty());
    }

    #[test]
    fn finds_loss_duplicate_phantom_wrong_index_and_divergence() {
        let h = vec![
            p("a", Outcome::Ok(1)),
            p("b", Outcome::Ok(2)),
            p("f", Outcome::Fail),
        ];
        let good = r(&[(1, "a"), (2, "b")]);
        let lost = r(&[(1, "a")]);
        let dup = r(&[(1, "a"), (2, "b"), (3, "b")]);
        let phantom = r(&[(1, "a"), (2, "b"), (3, "f"), (4, "zz")]);
        let moved = r(&[(1, "a"), (3, "b")]);
        let v = check(&h, &[good.clone(), lost]);
        assert!(
            v.iter()
                .any(|x| matches!(x, Violation::Lost { replica: 1, .. }))
        );
        assert!(v.iter().any(|x| matches!(x, Violation::Divergence { .. })));
        let v = check(&h, &[dup]);
        assert!(
            v.iter()
                .any(|x| matches!(x, Violation::Duplicate { count: 2, .. }))
        );
        let v = check(&h, &[phantom]);
        assert_eq!(
            v.iter()
                .filter(|x| matches!(x, Violation::Unexpected { .. }))
                .count(),
            2
        );
        let v = check(&h, &[moved]);
        assert!(v.iter().any(|x| matches!(
            x,
            Violation::WrongIndex {
                acked: 2,
                actual: 3,
                ..
            }
        )));
    }
}
