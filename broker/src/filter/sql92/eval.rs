//! Evaluating a parsed expression against one message's properties, in three-valued logic:
//! `Some(true)`, `Some(false)`, or `None` for unknown (a missing property, or operands that do
//! not compare). Never an error and never a panic: every input is some message's properties.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::Cmp;
use super::Expr;
use super::Properties;
use super::Text;
use super::Value;

/// The truth of `e` (a condition; a value is read as a boolean: `'true'`/`'false'` in any case,
/// else unknown).
pub fn truth<P: Properties>(e: &Expr, p: &P) -> Option<bool> {
    match e {
        Expr::Not(x) => truth(x, p).map(|b| !b),
        // SQL's three-valued AND and OR, short-circuiting on the deciding value.
        Expr::And(a, b) => match truth(a, p) {
            Some(false) => Some(false),
            l => match (l, truth(b, p)) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
        },
        Expr::Or(a, b) => match truth(a, p) {
            Some(true) => Some(true),
            l => match (l, truth(b, p)) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        },
        Expr::Cmp(op, a, b) => compare(value(a, p), value(b, p), *op),
        Expr::IsNull(x, not) => Some(matches!(value(x, p), V::Null) != *not),
        Expr::Between { v, lo, hi, negated } => {
            let v = value(v, p);
            let ge = compare(v, value(lo, p), Cmp::Ge);
            let le = compare(v, value(hi, p), Cmp::Le);
            let within = match (ge, le) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            within.map(|b| b != *negated)
        }
        Expr::In {
            prop,
            list,
            negated,
        } => p.get(prop).map(|v| list.contains(v) != *negated),
        Expr::Text {
            op,
            v,
            pat,
            negated,
        } => match value(v, p) {
            V::Str(s) => Some(
                match op {
                    Text::Contains => s.contains(pat.as_str()),
                    Text::StartsWith => s.starts_with(pat.as_str()),
                    Text::EndsWith => s.ends_with(pat.as_str()),
                } != *negated,
            ),
            _ => None,
        },
        Expr::Lit(_) | Expr::Prop(_) | Expr::Neg(_) => boolean(value(e, p)),
    }
}

/// A value met while evaluating, borrowed from the expression or the message: evaluating a
/// filter against a message copies no string.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
}

impl<'a> V<'a> {
    fn of(v: &'a Value) -> V<'a> {
        match v {
            Value::Null => V::Null,
            Value::Int(n) => V::Int(*n),
            Value::Float(f) => V::Float(*f),
            Value::Str(s) => V::Str(s),
            Value::Bool(b) => V::Bool(*b),
        }
    }
}

/// The value of `e` (a condition's value is its truth, unknown as [`V::Null`]).
fn value<'a, P: Properties>(e: &'a Expr, p: &'a P) -> V<'a> {
    match e {
        Expr::Lit(v) => V::of(v),
        Expr::Prop(name) => p.get(name).map_or(V::Null, V::Str),
        Expr::Neg(x) => match number(value(x, p)) {
            Some(V::Int(n)) => n.checked_neg().map_or(V::Null, V::Int),
            Some(V::Float(f)) => V::Float(-f),
            _ => V::Null,
        },
        _ => truth(e, p).map_or(V::Null, V::Bool),
    }
}

/// `v` as a number: itself, or a string holding an integer or a finite decimal.
fn number(v: V<'_>) -> Option<V<'_>> {
    match v {
        V::Int(_) | V::Float(_) => Some(v),
        V::Str(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                Some(V::Int(n))
            } else {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(V::Float)
            }
        }
        _ => None,
    }
}

/// `a op b` for two constants (the parser's check of BETWEEN's bounds).
pub fn compare_constants(a: &Value, b: &Value, op: Cmp) -> Option<bool> {
    compare(V::of(a), V::of(b), op)
}

/// `a op b`; unknown if either is missing or they do not compare. Two strings are equal or
/// not as strings, and ordered as numbers; a string and a number compare as numbers; a
/// string and a boolean as booleans (`'true'`/`'false'`); booleans are equal or not.
fn compare(a: V<'_>, b: V<'_>, op: Cmp) -> Option<bool> {
    let ord = match (a, b) {
        (V::Null, _) | (_, V::Null) => return None,
        (V::Str(x), V::Str(y)) if matches!(op, Cmp::Eq | Cmp::Ne) => x.cmp(y),
        (V::Bool(_), _) | (_, V::Bool(_)) => {
            let (x, y) = (boolean(a)?, boolean(b)?);
            if !matches!(op, Cmp::Eq | Cmp::Ne) {
                return None;
            }
            x.cmp(&y)
        }
        _ => match (number(a)?, number(b)?) {
            (V::Int(x), V::Int(y)) => x.cmp(&y),
            (x, y) => float(x)?.partial_cmp(&float(y)?)?,
        },
    };
    Some(match op {
        Cmp::Eq => ord == Ordering::Equal,
        Cmp::Ne => ord != Ordering::Equal,
        Cmp::Gt => ord == Ordering::Greater,
        Cmp::Ge => ord != Ordering::Less,
        Cmp::Lt => ord == Ordering::Less,
        Cmp::Le => ord != Ordering::Greater,
    })
}

/// `v` as a boolean: itself, or `'true'`/`'false'` in any case.
fn boolean(v: V<'_>) -> Option<bool> {
    match v {
        V::Bool(b) => Some(b),
        V::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        V::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn float(v: V<'_>) -> Option<f64> {
    match v {
        V::Int(n) => Some(n as f64),
        V::Float(f) => Some(f),
        _ => None,
    }
}

/// Adds the properties `e` reads to `out`.
pub fn properties<'e>(e: &'e Expr, out: &mut BTreeSet<&'e str>) {
    match e {
        Expr::Lit(_) => {}
        Expr::Prop(name) | Expr::In { prop: name, .. } => {
            out.insert(name);
        }
        Expr::Neg(x) | Expr::Not(x) | Expr::IsNull(x, _) | Expr::Text { v: x, .. } => {
            properties(x, out)
        }
        Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
            properties(a, out);
            properties(b, out);
        }
        Expr::Between { v, lo, hi, .. } => {
            properties(v, out);
            properties(lo, out);
            properties(hi, out);
        }
    }
}
