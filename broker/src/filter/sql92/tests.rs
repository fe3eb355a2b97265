//! The SQL92 filter: errors with positions, RocketMQ's semantics where they are sound, and a
//! property test against a reference evaluator written apart from `eval`.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::Sql92;

fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn matches(sql: &str, kv: &[(&str, &str)]) -> bool {
    Sql92::parse(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .matches(&props(kv))
}

/// (line, column, message) of the error of `sql`.
fn error(sql: &str) -> (u32, u32, String) {
    let e = Sql92::parse(sql).expect_err(sql);
    (e.line, e.column, e.message)
}

#[test]
fn rocketmq_examples_match_as_documented() {
    let m = [("TAGS", "TagA"), ("c1", "5"), ("c2", "v6")];
    assert!(matches(
        "(TAGS IN ('TagA', 'TagB')) AND (c1 BETWEEN 4 AND 7) AND (c2 = 'v6')",
        &m
    ));
    assert!(!matches("c1 BETWEEN 6 AND 7", &m));
    assert!(matches("TAGS is not null and TAGS in ('TagA', 'TagB')", &m));
    assert!(matches("a between 0 and 3", &[("a", "2")]));
    assert!(matches("c1 > 4.5 AND c1 <= 5", &m));
    assert!(matches("c2 <> 'v7' OR c1 = 0", &m));
    assert!(matches(
        "c2 CONTAINS '6' AND c2 STARTSWITH 'v' AND c2 ENDSWITH '6'",
        &m
    ));
    assert!(matches(
        "c2 NOT CONTAINS 'x' and not (c2 startswith 'x')",
        &m
    ));
    assert!(matches("TRUE", &m) && !matches("FALSE", &m) && !matches("NULL", &m));
}

#[test]
fn missing_and_mismatched_properties_are_unknown_not_false() {
    // Unknown: neither the comparison nor its negation matches.
    for sql in [
        "a > 1",
        "NOT (a > 1)",
        "a = 'x'",
        "a <> 'x'",
        "a IN ('x')",
        "a NOT IN ('x')",
        "a BETWEEN 1 AND 2",
        "a NOT BETWEEN 1 AND 2",
        "a CONTAINS 'x'",
        "a NOT CONTAINS 'x'",
    ] {
        assert!(!matches(sql, &[]), "{sql} matched a message without a");
    }
    assert!(matches("a IS NULL", &[]) && !matches("a IS NOT NULL", &[]));
    assert!(!matches("a > 1", &[("a", "abc")]) && !matches("NOT (a > 1)", &[("a", "abc")]));
    // Three-valued AND/OR: a known side decides.
    assert!(matches("a > 1 OR b = 'x'", &[("a", "abc"), ("b", "x")]));
    assert!(!matches("a > 1 AND b = 'x'", &[("b", "x")]));
    assert!(matches("NOT (a > 1 AND b = 'y')", &[("b", "x")]));
}

#[test]
fn numbers_in_properties_compare_as_numbers() {
    assert!(matches("a > 3", &[("a", "3.5")]));
    assert!(matches("a = 3", &[("a", "3.0")]));
    assert!(matches("a = 10", &[("a", "10")]) && !matches("a = 10", &[("a", "9")]));
    assert!(matches("a > -5", &[("a", "-4")]));
    assert!(matches("-a = 4", &[("a", "-4")]));
    assert!(matches("a < 9223372036854775807", &[("a", "12")]));
    assert!(matches("a > b", &[("a", "10"), ("b", "9")]), "numerically");
    assert!(
        !matches("a = b", &[("a", "10"), ("b", "10.0")]),
        "= of strings is text"
    );
    assert!(matches("a >= 0.0 AND a < 1e3", &[("a", "999")]));
    assert!(matches("a = TRUE", &[("a", "True")]) && matches("a", &[("a", "true")]));
    assert!(!matches("a", &[("a", "yes")]) && !matches("NOT a", &[("a", "yes")]));
}

#[test]
fn keywords_ignore_case_and_properties_do_not() {
    assert!(matches("a is NoT nUlL aNd A iS nUlL", &[("a", "1")]));
    assert!(matches("x = 'it''s' -- a comment", &[("x", "it's")]));
    assert!(matches("/* a\n comment */ x\n=\n'y'", &[("x", "y")]));
    assert!(matches("$x_1 = 'y'", &[("$x_1", "y")]));
}

#[test]
fn errors_say_where() {
    let (line, column, _) = error("a = 1 b");
    assert_eq!((line, column), (1, 7));
    let (line, column, msg) = error("a = 1\n  AND b > 'x'");
    assert_eq!((line, column), (2, 11), "{msg}");
    assert!(msg.contains("only numbers and properties"), "{msg}");
    assert_eq!(error("a = NULL").1, 5);
    assert!(error("a IN (1)").2.contains("IN lists strings"));
    assert!(error("a BETWEEN 3 AND 1").2.contains("lower bound"));
    assert!(error("'abc").2.contains("not closed"));
    assert_eq!(error("a = #").1, 5);
    assert!(error("").2.contains("expected a value"));
    assert!(error("a LIKE 'x%'").2.contains("unexpected property LIKE"));
    assert!(error("1 + 1").2.contains("unexpected"));
    assert!(error("a = 1 AND 2").2.contains("not a condition"));
    assert!(error("-a").2.contains("not a condition"));
    assert!(error("99999999999999999999 > a").2.contains("out of range"));
    assert!(
        error("(a > 1) > 2")
            .2
            .contains("condition cannot be compared")
    );
    assert!(error("a CONTAINS b").2.contains("takes a string"));
    let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
    assert!(error(&deep).2.contains("nests deeper"));
    let nots = format!("{}a = 1", "NOT ".repeat(200));
    assert!(error(&nots).2.contains("nests deeper"));
    let negs = format!("{}1 = a", "- ".repeat(200));
    assert!(error(&negs).2.contains("nests deeper"));
}

#[test]
fn what_it_reads() {
    let f = Sql92::parse("a > 1 AND (b IN ('x') OR NOT c CONTAINS 'y') AND d IS NULL").unwrap();
    let p: Vec<&str> = f.properties().into_iter().collect();
    assert_eq!(p, ["a", "b", "c", "d"]);
}

/// The reference: expressions built from a small grammar, with their meaning written out
/// directly (not through `eval`), then rendered as text, parsed and evaluated by the filter.
#[derive(Debug, Clone)]
enum R {
    /// prop op integer
    Num(usize, &'static str, i64),
    /// prop = / <> string
    Str(usize, bool, String),
    Between(usize, i64, i64, bool),
    In(usize, Vec<String>, bool),
    IsNull(usize, bool),
    /// prop CONTAINS/STARTSWITH/ENDSWITH pat, negated
    Text(usize, u8, String, bool),
    Not(Box<R>),
    And(Box<R>, Box<R>),
    Or(Box<R>, Box<R>),
}

const NAMES: [&str; 3] = ["a", "b", "c"];

fn reference(r: &R, m: &[Option<&str>; 3]) -> Option<bool> {
    let num = |i: usize| -> Option<f64> {
        let s = m[i]?.trim();
        s.parse::<i64>()
            .map(|n| n as f64)
            .ok()
            .or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()))
    };
    match r {
        R::Num(i, op, k) => {
            let x = num(*i)?;
            let k = *k as f64;
            Some(match *op {
                "=" => x == k,
                "<>" => x != k,
                ">" => x > k,
                ">=" => x >= k,
                "<" => x < k,
                _ => x <= k,
            })
        }
        R::Str(i, eq, s) => Some((m[*i]? == s) == *eq),
        R::Between(i, lo, hi, neg) => {
            let x = num(*i)?;
            Some((x >= *lo as f64 && x <= *hi as f64) != *neg)
        }
        R::In(i, list, neg) => {
            let v = m[*i]?;
            Some(list.iter().any(|s| s == v) != *neg)
        }
        R::IsNull(i, neg) => Some(m[*i].is_none() != *neg),
        R::Text(i, op, pat, neg) => {
            let v = m[*i]?;
            let hit = match op {
                0 => v.contains(pat.as_str()),
                1 => v.starts_with(pat.as_str()),
                _ => v.ends_with(pat.as_str()),
            };
            Some(hit != *neg)
        }
        R::Not(x) => reference(x, m).map(|b| !b),
        R::And(a, b) => match (reference(a, m), reference(b, m)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        R::Or(a, b) => match (reference(a, m), reference(b, m)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Renders `r` as text, keywords in `upper` or lower case.
fn render(r: &R, upper: bool) -> String {
    let k = |w: &str| {
        if upper {
            w.to_uppercase()
        } else {
            w.to_lowercase()
        }
    };
    let not = |neg: bool| {
        if neg {
            format!("{} ", k("not"))
        } else {
            String::new()
        }
    };
    match r {
        R::Num(i, op, n) => format!("{} {op} {n}", NAMES[*i]),
        R::Str(i, eq, s) => format!(
            "{} {} {}",
            NAMES[*i],
            if *eq { "=" } else { "<>" },
            quote(s)
        ),
        R::Between(i, lo, hi, neg) => format!(
            "{} {}{} {lo} {} {hi}",
            NAMES[*i],
            not(*neg),
            k("between"),
            k("and")
        ),
        R::In(i, list, neg) => {
            let items: Vec<String> = list.iter().map(|s| quote(s)).collect();
            format!(
                "{} {}{} ({})",
                NAMES[*i],
                not(*neg),
                k("in"),
                items.join(", ")
            )
        }
        R::IsNull(i, neg) => format!("{} {} {}{}", NAMES[*i], k("is"), not(*neg), k("null")),
        R::Text(i, op, pat, neg) => {
            let w = ["contains", "startswith", "endswith"][*op as usize];
            format!("{} {}{} {}", NAMES[*i], not(*neg), k(w), quote(pat))
        }
        R::Not(x) => format!("{} ({})", k("not"), render(x, upper)),
        R::And(a, b) => format!("({}) {} ({})", render(a, upper), k("and"), render(b, upper)),
        R::Or(a, b) => format!("({}) {} ({})", render(a, upper), k("or"), render(b, upper)),
    }
}

fn words() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("x".to_string()),
        Just("ab".to_string()),
        Just("it's".to_string()),
        Just("1".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = R> {
    let ops = prop_oneof![
        Just("="),
        Just("<>"),
        Just(">"),
        Just(">="),
        Just("<"),
        Just("<=")
    ];
    prop_oneof![
        (0..3usize, ops, -3..12i64).prop_map(|(i, op, n)| R::Num(i, op, n)),
        (0..3usize, any::<bool>(), words()).prop_map(|(i, eq, s)| R::Str(i, eq, s)),
        (0..3usize, -3..12i64, 0..6i64, any::<bool>()).prop_map(|(i, lo, d, neg)| R::Between(
            i,
            lo,
            lo + d,
            neg
        )),
        (
            0..3usize,
            prop::collection::vec(words(), 1..4),
            any::<bool>()
        )
            .prop_map(|(i, l, neg)| R::In(i, l, neg)),
        (0..3usize, any::<bool>()).prop_map(|(i, neg)| R::IsNull(i, neg)),
        (0..3usize, 0..3u8, words(), any::<bool>())
            .prop_map(|(i, op, p, neg)| R::Text(i, op, p, neg)),
    ]
}

fn tree() -> impl Strategy<Value = R> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|x| R::Not(Box::new(x))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| R::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| R::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn value() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("")),
        Just(Some("1")),
        Just(Some("10")),
        Just(Some("-3")),
        Just(Some("2.5")),
        Just(Some(" 4")),
        Just(Some("abc")),
        Just(Some("x")),
        Just(Some("it's")),
        Just(Some("true")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_filter_agrees_with_the_reference(
        r in tree(),
        m in [value(), value(), value()],
        upper in any::<bool>(),
    ) {
        let text = render(&r, upper);
        let f = Sql92::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let kv: BTreeMap<String, String> = NAMES
            .iter()
            .zip(m.iter())
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
            .collect();
        prop_assert_eq!(
            f.matches(&kv),
            reference(&r, &m) == Some(true),
            "{} with {:?}", text, kv
        );
    }

    /// Any text: an expression or a positioned error, never a panic.
    #[test]
    fn any_text_parses_or_errs(text in "\\PC{0,80}") {
        if let Err(e) = Sql92::parse(&text) {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }

    /// Token soup from the grammar's own words: the same, and no panic when evaluating.
    #[test]
    fn token_soup_parses_or_errs(words in prop::collection::vec(prop_oneof![
        Just("a"), Just("b"), Just("("), Just(")"), Just("NOT"), Just("AND"), Just("OR"),
        Just("="), Just("<>"), Just(">"), Just("<="), Just("1"), Just("-"), Just("2.5"),
        Just("'x'"), Just("IN"), Just(","), Just("BETWEEN"), Just("IS"), Just("NULL"),
        Just("CONTAINS"), Just("TRUE"),
    ], 0..16)) {
        let text = words.join(" ");
        if let Ok(f) = Sql92::parse(&text) {
            let _ = f.matches(&props(&[("a", "1"), ("b", "x")]));
        }
    }
}
