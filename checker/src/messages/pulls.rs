//! `hole` and `nonmonotonic-poll`: a pull from offset `o` returns offsets `o, o+1, …` in order
//! and a next offset no lower than `o`.

use super::Anomaly;
use super::Op;
use super::Stats;
use super::anomaly;

pub(super) fn check(history: &[Op], out: &mut Vec<Anomaly>, st: &mut Stats) {
    for op in history {
        let Op::Pull {
            broker,
            queue,
            from,
            msgs,
            next,
            ..
        } = op
        else {
            continue;
        };
        st.pulled += msgs.len();
        for (k, (off, _, _)) in msgs.iter().enumerate() {
            let want = from + k as i64;
            if *off != want {
                out.push(anomaly(
                    if *off > want {
                        "hole"
                    } else {
                        "nonmonotonic-poll"
                    },
                    format!("pull of {broker}/{queue} from {from}: entry {k} is offset {off}"),
                ));
            }
        }
        if *next < *from {
            out.push(anomaly(
                "nonmonotonic-poll",
                format!("pull of {broker}/{queue} from {from} answered next {next}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Result3;
    use super::super::testing::*;

    #[test]
    fn pulls_are_dense_and_forward() {
        let base = || {
            vec![
                send("a", None, 0, Result3::Ok, Some(0)),
                send("b", None, 0, Result3::Ok, Some(1)),
                recv(0, false, 5, &[("a", 0), ("b", 1)]),
            ]
        };
        let mut good = base();
        good.push(pull(0, &[(0, "a"), (1, "b")], 2));
        assert!(kinds(&good).is_empty(), "{:?}", kinds(&good));
        let mut hole = base();
        hole.push(pull(0, &[(1, "b")], 2));
        assert_eq!(kinds(&hole), vec!["hole"]);
        let mut back = base();
        back.push(pull(1, &[(1, "b")], 0));
        assert_eq!(kinds(&back), vec!["nonmonotonic-poll"]);
    }
}
