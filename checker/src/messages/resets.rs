//! Resets of a consumer group's position ([`Op::Reset`], issue 16): the one way a group may
//! get a message again after acknowledging it, or hand it to a second consumer while the
//! first still holds it (a reset forgets deliveries in flight). The checks that would call
//! that `acked-redelivered`, `concurrent-ownership`, `order-violation`, `timer-duplicate` or
//! `txn-duplicate` ask [`Resets::between`] first: a reset that may have taken effect after
//! the earlier event began and before the later delivery returned excuses it. An OK reset
//! took effect within its own interval; an unknown one at any time after it was invoked (a
//! committed entry applies whenever its group next has a leader), so from then on the four
//! rules are off for that group: the price of not knowing. Nothing else is excused: a group
//! that was never reset is held to every rule.

use std::collections::BTreeMap;

use super::Op;
use super::Result3;

/// Every reset that may have happened, per group: (invoked, latest effect).
#[derive(Debug, Default)]
pub(super) struct Resets {
    plain: Vec<(u64, u64)>,
    fifo: Vec<(u64, u64)>,
}

impl Resets {
    /// The resets of `history`.
    pub(super) fn index(history: &[Op]) -> Resets {
        let mut r = Resets::default();
        for op in history {
            if let Op::Reset {
                fifo,
                invoked,
                completed,
                result,
            } = op
            {
                let end = match result {
                    Result3::Ok => *completed,
                    Result3::Info => u64::MAX,
                    Result3::Fail => continue,
                };
                let list = if *fifo { &mut r.fifo } else { &mut r.plain };
                list.push((*invoked, end));
            }
        }
        r
    }

    /// True if a reset of the FIFO (`fifo`) or the plain group may have taken effect after
    /// `after` and before `before` (both µs).
    pub(super) fn between(&self, fifo: bool, after: u64, before: u64) -> bool {
        let list = if fifo { &self.fifo } else { &self.plain };
        list.iter().any(|&(i, end)| i < before && end > after)
    }

    /// Resets that may have happened.
    pub(super) fn count(&self) -> usize {
        self.plain.len() + self.fifo.len()
    }
}

/// First deliveries (attempt 1) of the plain group, per message id: a second is a copy
/// (`timer-duplicate`, `txn-duplicate`) unless a reset came between the receive that made the
/// first and this one's return.
#[derive(Default)]
pub(super) struct FirstDeliveries<'h> {
    /// Id → (the last first delivery's receive invoked, reported already).
    seen: BTreeMap<&'h str, (u64, bool)>,
}

impl<'h> FirstDeliveries<'h> {
    /// Records a first delivery of `id` by a receive over `invoked..completed`; true the first
    /// time one is a copy (report it once).
    pub(super) fn copy(&mut self, id: &'h str, invoked: u64, completed: u64, r: &Resets) -> bool {
        match self.seen.get_mut(id) {
            None => {
                self.seen.insert(id, (invoked, false));
                false
            }
            Some((earlier, _)) if r.between(false, *earlier, completed) => {
                *earlier = invoked;
                false
            }
            Some((_, reported)) => !std::mem::replace(reported, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Result3;
    use super::super::testing::*;

    /// After an acknowledged reset, a message comes back after its ack, to a second consumer
    /// while the first holds it, and a FIFO group starts over: all accepted. Without the reset,
    /// or with one that definitely failed or came too late, the same history is a violation.
    #[test]
    fn a_reset_excuses_what_it_explains_and_nothing_else() {
        let h = |reset: Option<(u64, Result3)>| {
            let mut h = vec![
                send("a", None, 0, Result3::Ok, Some(0)),
                send("b", None, 0, Result3::Ok, Some(1)),
                send("f0", Some("g"), 0, Result3::Ok, Some(2)),
                send("f1", Some("g"), 1, Result3::Ok, Some(3)),
                recv(0, false, 10, &[("a", 0), ("b", 1)]),
                ack("a", 12),
                recv(99, true, 10, &[("f0", 2)]),
                ack("f0", 12),
                recv(99, true, 14, &[("f1", 3)]),
                ack("f1", 16),
            ];
            if let Some((t, r)) = reset {
                h.push(reset_op(false, t, r));
                h.push(reset_op(true, t, r));
            }
            // a after its ack, b while consumer 0 holds it, f0 after f1's ack.
            h.push(recv(1, false, 30, &[("a", 0), ("b", 1)]));
            h.push(recv(99, true, 30, &[("f0", 2)]));
            h
        };
        assert!(
            kinds(&h(Some((20, Result3::Ok)))).is_empty(),
            "{:?}",
            kinds(&h(Some((20, Result3::Ok))))
        );
        // Unknown outcome: it may have happened.
        assert!(kinds(&h(Some((20, Result3::Info)))).is_empty());
        for reset in [None, Some((20, Result3::Fail)), Some((40, Result3::Ok))] {
            let k = kinds(&h(reset));
            for want in [
                "acked-redelivered",
                "concurrent-ownership",
                "order-violation",
            ] {
                assert!(k.contains(&want), "{reset:?}: {want} missing from {k:?}");
            }
        }
    }
}
