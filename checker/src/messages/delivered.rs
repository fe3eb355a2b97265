//! `unexpected`, `aborted-read`, `corrupted`, `future-read`: every message handed out (by a
//! receive or a pull) must come from a send that was attempted and did not definitely fail,
//! carry the body that was sent, and arrive after that send began.

use super::Anomaly;
use super::Op;
use super::anomaly;
use super::sends::Sends;

fn one(s: &Sends<'_>, out: &mut Vec<Anomaly>, id: &str, body: &[u8], completed: u64) {
    match s.attempted.get(id) {
        None if s.failed.contains(id) => out.push(anomaly(
            "aborted-read",
            format!("{id} was delivered but its send definitely failed"),
        )),
        None => out.push(anomaly("unexpected", format!("{id} was never sent"))),
        Some((b, _)) if *b != body => out.push(anomaly("corrupted", format!("{id}: body differs"))),
        Some((_, invoked)) if completed < *invoked => out.push(anomaly(
            "future-read",
            format!("{id} delivered at {completed} before its send began at {invoked}"),
        )),
        Some(_) => {}
    }
}

pub(super) fn check(history: &[Op], s: &Sends<'_>, out: &mut Vec<Anomaly>) {
    for op in history {
        match op {
            Op::Receive {
                completed, msgs, ..
            } => {
                for d in msgs {
                    one(s, out, &d.id, &d.body, *completed);
                }
            }
            Op::Pull {
                completed, msgs, ..
            } => {
                for (_, id, body) in msgs {
                    one(s, out, id, body, *completed);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Delivered;
    use super::super::Result3;
    use super::super::testing::*;

    #[test]
    fn deliveries_of_attempted_sends_pass() {
        let h = vec![
            send("a", None, 0, Result3::Ok, None),
            send("b", None, 0, Result3::Info, None),
            recv(0, false, 10, &[("a", 0), ("b", 1)]),
        ];
        assert!(kinds(&h).is_empty(), "{:?}", kinds(&h));
    }

    #[test]
    fn each_bad_delivery_is_named() {
        let mut h = vec![
            send("failed", None, 0, Result3::Fail, None),
            send("late", None, 50, Result3::Ok, None),
            send("bent", None, 0, Result3::Ok, None),
            recv(0, false, 10, &[("failed", 0), ("ghost", 1), ("late", 2)]),
        ];
        if let super::Op::Receive { msgs, .. } = &mut h[3] {
            msgs.push(Delivered {
                id: "bent".into(),
                body: b"x".to_vec(),
                attempt: 1,
                pos: None,
            });
        }
        let k = kinds(&h);
        for want in ["aborted-read", "unexpected", "future-read", "corrupted"] {
            assert!(k.contains(&want), "{want} missing from {k:?}");
        }
    }
}
