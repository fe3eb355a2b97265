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
pub fn truth(e: &Expr, p: &impl Properties) -> Option<bool> {
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
        Expr::Cmp(op, a, b) => compare(&value(a, p), &value(b, p), *op),
        Expr::IsNull(x, not) => Some((value(x, p) == Value::Null) != *not),
        Expr::Between { v, lo, hi, negated } => {
            let v = value(v, p);
            let ge = compare(&v, &value(lo, p), Cmp::Ge);
            let le = compare(&v, &value(hi, p), Cmp::Le);
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
            Value::Str(s) => Some(
                match op {
                    Text::Contains => s.contains(pat.as_str()),
                    Text::StartsWith => s.starts_with(pat.as_str()),
                    Text::EndsWith => s.ends_with(pat.as_str()),
                } != *negated,
            ),
            _ => None,
        },
        Expr::Lit(_) | Expr::Prop(_) | Expr::Neg(_) => match value(e, p) {
            Value::Bool(b) => Some(b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        },
    }
}

/// The value of `e` (a condition's value is its truth, unknown as [`Value::Null`]).
fn value(e: &Expr, p: &impl Properties) -> Value {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Prop(name) => p
            .get(name)
            .map_or(Value::Null, |s| Value::Str(s.to_string())),
        Expr::Neg(x) => match number(&value(x, p)) {
            Some(Value::Int(n)) => n.checked_neg().map_or(Value::Null, Value::Int),
            Some(Value::Float(f)) => Value::Float(-f),
            _ => Value::Null,
        },
        _ => truth(e, p).map_or(Value::Null, Value::Bool),
    }
}

/// `v` as a number: itself, or a string holding an integer or a finite decimal.
fn number(v: &Value) -> Option<Value> {
    match v {
        Value::Int(_) | Value::Float(_) => Some(v.clone()),
        Value::Str(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                Some(Value::Int(n))
            } else {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Value::Float)
            }
        }
        _ => None,
    }
}

/// `a op b`; unknown if either is missing or they do not compare. Two strings are equal or
/// not as strings, and ordered as numbers; a string and a number compare as numbers; a
/// string and a boolean as booleans (`'true'`/`'false'`); booleans are equal or not.
pub fn compare(a: &Value, b: &Value, op: Cmp) -> Option<bool> {
    let ord = match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Str(x), Value::Str(y)) if matches!(op, Cmp::Eq | Cmp::Ne) => x.cmp(y),
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            let (x, y) = (boolean(a)?, boolean(b)?);
            if !matches!(op, Cmp::Eq | Cmp::Ne) {
                return None;
            }
            x.cmp(&y)
        }
        _ => match (number(a)?, number(b)?) {
            (Value::Int(x), Value::Int(y)) => x.cmp(&y),
            (x, y) => float(&x)?.partial_cmp(&float(&y)?)?,
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

fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Int(n) => Some(*n as f64),
        Value::Float(f) => Some(*f),
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
