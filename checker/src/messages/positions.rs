//! `inconsistent-offsets` and `duplicate`: a queue position holds one message for ever (every
//! send receipt, delivery and pull that names it agrees), and a message is stored at one
//! position — unless its client may repeat sends, when extra copies are counted
//! `retry-duplicate`s.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::Anomaly;
use super::Op;
use super::Pos;
use super::Result3;
use super::Stats;
use super::anomaly;
use super::sends::Sends;

#[derive(Default)]
struct Places<'h> {
    by_pos: BTreeMap<Pos, &'h str>,
    by_id: BTreeMap<&'h str, BTreeSet<Pos>>,
}

impl<'h> Places<'h> {
    fn record(&mut self, out: &mut Vec<Anomaly>, pos: &Pos, id: &'h str) {
        match self.by_pos.get(pos) {
            Some(other) if *other != id => out.push(anomaly(
                "inconsistent-offsets",
                format!("{pos:?} read as {other} and as {id}"),
            )),
            Some(_) => {}
            None => {
                self.by_pos.insert(pos.clone(), id);
            }
        }
        self.by_id.entry(id).or_default().insert(pos.clone());
    }
}

pub(super) fn check<'h>(history: &'h [Op], s: &Sends<'h>, out: &mut Vec<Anomaly>, st: &mut Stats) {
    let mut p = Places::default();
    for op in history {
        if let Op::Send {
            id,
            pos: Some(pos),
            result: Result3::Ok,
            ..
        } = op
        {
            p.record(out, pos, id);
        }
    }
    for op in history {
        match op {
            Op::Receive { msgs, .. } => {
                for d in msgs {
                    if let Some(pos) = &d.pos {
                        p.record(out, pos, &d.id);
                    }
                }
            }
            Op::Pull {
                broker,
                queue,
                msgs,
                ..
            } => {
                for (off, id, _) in msgs {
                    p.record(out, &(broker.clone(), *queue, *off), id);
                }
            }
            _ => {}
        }
    }
    for (id, ps) in &p.by_id {
        if ps.len() > 1 && s.repeats.contains(id) {
            st.retry_duplicates += ps.len() - 1;
        } else if ps.len() > 1 {
            out.push(anomaly("duplicate", format!("{id} stored at {ps:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Result3;
    use super::super::testing::*;

    #[test]
    fn one_message_per_position_and_one_position_per_message() {
        let good = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            recv(0, false, 10, &[("a", 0), ("b", 1)]),
            recv(1, false, 200, &[("b", 1)]),
        ];
        assert!(kinds(&good).is_empty(), "{:?}", kinds(&good));
        let bad = vec![
            send("a", None, 0, Result3::Ok, Some(0)),
            send("b", None, 0, Result3::Ok, Some(1)),
            // b read back at a's position; a stored twice.
            recv(0, false, 10, &[("b", 0), ("a", 5)]),
        ];
        let k = kinds(&bad);
        for want in ["inconsistent-offsets", "duplicate"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }
}
