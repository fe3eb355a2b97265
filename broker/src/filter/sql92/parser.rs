//! The SQL92 filter grammar (recursive descent, lowest precedence first):
//!
//! ```text
//! expr      := and (OR and)*
//! and       := not (AND not)*
//! not       := NOT not | predicate
//! predicate := value [ ('=' | '<>' | '>' | '>=' | '<' | '<=') value
//!                    | IS [NOT] NULL
//!                    | [NOT] BETWEEN value AND value
//!                    | [NOT] IN '(' string (',' string)* ')'
//!                    | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string ]
//! value     := ('+' | '-') value | constant | property | '(' expr ')'
//! ```
//!
//! Checked while parsing, each error with its position: the whole text is one expression (no
//! trailing tokens), the operands of AND, OR and NOT and the whole are conditions, `>`-style
//! comparisons take numbers or properties, `=` and `<>` never take NULL (IS NULL does), IN takes
//! a property and string constants, BETWEEN's constant bounds are in order, and nesting is at
//! most [`MAX_DEPTH`] deep.

use std::collections::BTreeSet;

use super::Cmp;
use super::Expr;
use super::SqlError;
use super::Text;
use super::Value;
use super::lexer::Kw;
use super::lexer::Pos;
use super::lexer::Tok;

/// Deepest nesting of parentheses and operators (a recursive parser must not overflow its
/// stack on a hostile expression).
pub const MAX_DEPTH: usize = 64;

/// Most strings in one IN list.
pub const MAX_IN: usize = 1_000;

/// Parses the tokens of one expression.
pub fn parse(tokens: Vec<(Tok, Pos)>) -> Result<Expr, SqlError> {
    let mut p = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let start = p.pos();
    let e = p.expr()?;
    if p.peek() != &Tok::End {
        return Err(SqlError::at(
            p.pos(),
            format!("unexpected {} after the expression", describe(p.peek())),
        ));
    }
    condition(&e, start)?;
    Ok(e)
}

struct Parser {
    tokens: Vec<(Tok, Pos)>,
    at: usize,
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("property {s}"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Int(n) => format!("number {n}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Kw(k) => format!("{k:?}").to_uppercase(),
        Tok::Op(o) => format!("'{o}'"),
        Tok::Open => "'('".into(),
        Tok::Close => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::End => "the end of the expression".into(),
    }
}

/// A condition: something AND, OR, NOT or the whole filter can take.
fn condition(e: &Expr, at: Pos) -> Result<(), SqlError> {
    match e {
        Expr::Lit(Value::Bool(_) | Value::Null) | Expr::Prop(_) => Ok(()),
        Expr::Lit(_) | Expr::Neg(_) => Err(SqlError::at(
            at,
            "this is a value, not a condition (compare it with something)",
        )),
        _ => Ok(()),
    }
}

/// Whether `e` is a condition rather than a value (a comparison's operand must not be one).
fn is_condition(e: &Expr) -> bool {
    !matches!(e, Expr::Lit(_) | Expr::Prop(_) | Expr::Neg(_))
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at].0
    }

    fn pos(&self) -> Pos {
        self.tokens[self.at].1
    }

    fn bump(&mut self) -> (Tok, Pos) {
        let t = self.tokens[self.at].clone();
        if t.0 != Tok::End {
            self.at += 1;
        }
        t
    }

    fn eat_kw(&mut self, kw: Kw) -> bool {
        if self.peek() == &Tok::Kw(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), SqlError> {
        if self.peek() == &want {
            self.at += 1;
            Ok(())
        } else {
            Err(SqlError::at(
                self.pos(),
                format!("expected {what}, found {}", describe(self.peek())),
            ))
        }
    }

    fn deeper(&mut self) -> Result<(), SqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SqlError::at(
                self.pos(),
                format!("the expression nests deeper than {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, SqlError> {
        self.deeper()?;
        let e = self.chain(Kw::Or, Self::and, Expr::Or)?;
        self.depth -= 1;
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, SqlError> {
        self.chain(Kw::And, Self::not, Expr::And)
    }

    /// `operand (kw operand)*`, left-associative; every operand must be a condition.
    fn chain(
        &mut self,
        kw: Kw,
        operand: fn(&mut Self) -> Result<Expr, SqlError>,
        join: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<Expr, SqlError> {
        let at = self.pos();
        let mut e = operand(self)?;
        while self.eat_kw(kw) {
            let right_at = self.pos();
            let r = operand(self)?;
            condition(&e, at)?;
            condition(&r, right_at)?;
            e = join(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        if self.eat_kw(Kw::Not) {
            self.deeper()?;
            let at = self.pos();
            let e = self.not()?;
            condition(&e, at)?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, SqlError> {
        let at = self.pos();
        let v = self.value()?;
        let negated = matches!(self.peek(), Tok::Kw(Kw::Not))
            && matches!(
                self.tokens.get(self.at + 1).map(|t| &t.0),
                Some(Tok::Kw(
                    Kw::Between | Kw::In | Kw::Contains | Kw::StartsWith | Kw::EndsWith
                ))
            );
        if negated {
            self.at += 1;
        }
        let (tok, pos) = (self.peek().clone(), self.pos());
        let predicate = matches!(
            tok,
            Tok::Op("=" | "<>" | ">" | ">=" | "<" | "<=")
                | Tok::Kw(
                    Kw::Is | Kw::Between | Kw::In | Kw::Contains | Kw::StartsWith | Kw::EndsWith
                )
        );
        if !predicate {
            // The value alone: a property as a condition, or a value the caller refuses
            // where a condition is needed.
            return Ok(v);
        }
        self.at += 1;
        match tok {
            Tok::Op(o) => {
                let cmp = Cmp::from_op(o);
                let right_at = self.pos();
                let r = self.value()?;
                for (e, p) in [(&v, at), (&r, right_at)] {
                    operand(cmp, e, p)?;
                }
                Ok(Expr::Cmp(cmp, Box::new(v), Box::new(r)))
            }
            Tok::Kw(Kw::Is) => {
                let not = self.eat_kw(Kw::Not);
                self.expect(Tok::Kw(Kw::Null), "NULL")?;
                Ok(Expr::IsNull(Box::new(v), not))
            }
            Tok::Kw(Kw::Between) => {
                let lo_at = self.pos();
                let lo = self.value()?;
                self.expect(Tok::Kw(Kw::And), "AND (of BETWEEN)")?;
                let hi_at = self.pos();
                let hi = self.value()?;
                for (e, p) in [(&v, at), (&lo, lo_at), (&hi, hi_at)] {
                    operand(Cmp::Ge, e, p)?;
                }
                if let (Expr::Lit(l), Expr::Lit(h)) = (&lo, &hi)
                    && super::eval::compare_constants(l, h, Cmp::Gt) == Some(true)
                {
                    return Err(SqlError::at(
                        lo_at,
                        "BETWEEN's lower bound is above its upper bound",
                    ));
                }
                Ok(Expr::Between {
                    v: Box::new(v),
                    lo: Box::new(lo),
                    hi: Box::new(hi),
                    negated,
                })
            }
            Tok::Kw(Kw::In) => {
                let Expr::Prop(name) = v else {
                    return Err(SqlError::at(at, "IN applies to a property"));
                };
                self.expect(Tok::Open, "'(' (of IN)")?;
                let mut list = BTreeSet::new();
                loop {
                    match self.bump() {
                        (Tok::Str(s), _) => {
                            list.insert(s);
                        }
                        (t, p) => {
                            return Err(SqlError::at(
                                p,
                                format!("IN lists strings, found {}", describe(&t)),
                            ));
                        }
                    }
                    if list.len() > MAX_IN {
                        return Err(SqlError::at(
                            pos,
                            format!("IN lists at most {MAX_IN} strings"),
                        ));
                    }
                    if self.peek() == &Tok::Comma {
                        self.at += 1;
                        continue;
                    }
                    self.expect(Tok::Close, "',' or ')' (of IN)")?;
                    break;
                }
                Ok(Expr::In {
                    prop: name,
                    list,
                    negated,
                })
            }
            Tok::Kw(k @ (Kw::Contains | Kw::StartsWith | Kw::EndsWith)) => {
                let op = match k {
                    Kw::Contains => Text::Contains,
                    Kw::StartsWith => Text::StartsWith,
                    _ => Text::EndsWith,
                };
                let (Tok::Str(pat), _) = self.bump() else {
                    return Err(SqlError::at(
                        self.tokens[self.at - 1].1,
                        format!("{} takes a string constant", describe(&Tok::Kw(k))),
                    ));
                };
                Ok(Expr::Text {
                    op,
                    v: Box::new(v),
                    pat,
                    negated,
                })
            }
            other => Err(SqlError::at(
                pos,
                format!("expected a comparison, found {}", describe(&other)),
            )),
        }
    }

    fn value(&mut self) -> Result<Expr, SqlError> {
        self.deeper()?;
        let (tok, pos) = self.bump();
        let e = match tok {
            Tok::Op("+") => self.value()?,
            Tok::Op("-") => Expr::Neg(Box::new(self.value()?)),
            Tok::Int(n) => Expr::Lit(Value::Int(n)),
            Tok::Float(f) => Expr::Lit(Value::Float(f)),
            Tok::Str(s) => Expr::Lit(Value::Str(s)),
            Tok::Kw(Kw::True) => Expr::Lit(Value::Bool(true)),
            Tok::Kw(Kw::False) => Expr::Lit(Value::Bool(false)),
            Tok::Kw(Kw::Null) => Expr::Lit(Value::Null),
            Tok::Ident(name) => Expr::Prop(name),
            Tok::Open => {
                let e = self.expr()?;
                self.expect(Tok::Close, "')'")?;
                e
            }
            other => {
                return Err(SqlError::at(
                    pos,
                    format!("expected a value, found {}", describe(&other)),
                ));
            }
        };
        self.depth -= 1;
        Ok(e)
    }
}

/// Checks one operand of a comparison.
fn operand(cmp: Cmp, e: &Expr, at: Pos) -> Result<(), SqlError> {
    match (cmp, e) {
        (_, Expr::Lit(Value::Null)) => Err(SqlError::at(
            at,
            "NULL cannot be compared (use IS NULL or IS NOT NULL)",
        )),
        (Cmp::Eq | Cmp::Ne, _) => Ok(()),
        (_, Expr::Lit(Value::Str(_) | Value::Bool(_))) => Err(SqlError::at(
            at,
            "only numbers and properties can be compared with > >= < <= or BETWEEN",
        )),
        (_, e) if is_condition(e) => Err(SqlError::at(
            at,
            "a condition cannot be compared with > >= < <= or BETWEEN",
        )),
        _ => Ok(()),
    }
}
