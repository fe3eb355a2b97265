//! Committed consumer offsets for offset-based consumption: per (group, topic, queue), the next
//! offset to consume. Ordinary commits only move forward (a retried or reordered commit can
//! never move a group back); an explicit reset may move it anywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::Serialize;

/// The committed offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffsets {
    offsets: BTreeMap<(String, String, u32), u64>,
}

impl ConsumerOffsets {
    /// Commits `offset`; returns the offset in effect afterwards.
    pub fn commit(
        &mut self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
        reset: bool,
    ) -> u64 {
        let slot = self
            .offsets
            .entry((group.to_string(), topic.to_string(), queue))
            .or_insert(offset);
        if reset || offset > *slot {
            *slot = offset;
        }
        *slot
    }

    /// The committed offset, if any.
    pub fn get(&self, group: &str, topic: &str, queue: u32) -> Option<u64> {
        self.offsets
            .get(&(group.to_string(), topic.to_string(), queue))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Against a model: commits are a running maximum, resets overwrite.
        #[test]
        fn commits_never_regress_without_reset(ops in proptest::collection::vec((0u64..100, any::<bool>()), 1..50)) {
            let mut o = ConsumerOffsets::default();
            let mut model: Option<u64> = None;
            for (off, reset) in ops {
                let got = o.commit("g", "t", 0, off, reset);
                model = Some(match model { None => off, Some(m) if reset => { let _ = m; off } Some(m) => m.max(off) });
                prop_assert_eq!(Some(got), model);
                prop_assert_eq!(o.get("g", "t", 0), model);
            }
        }
    }
}
