//! SQL92 message filters (v2 `FilterType.SQL`, issue 16): RocketMQ's grammar over a message's
//! properties, parsed once into an [`Expr`] and evaluated per message.
//!
//! - Grammar (`parser.rs`): comparisons `= <> > >= < <=`, `[NOT] BETWEEN … AND …`,
//!   `[NOT] IN ('…', …)`, `IS [NOT] NULL`, `[NOT] CONTAINS|STARTSWITH|ENDSWITH '…'`, `AND`, `OR`,
//!   `NOT`, parentheses, unary `+`/`-`; string (`'it''s'`), integer (`12`, `12L`), floating
//!   (`1.5`, `.5`, `1e3`) and boolean constants, `NULL`; `--` and `/* */` comments. Keywords are
//!   case-insensitive, property names case-sensitive (`[A-Za-z_$][A-Za-z0-9_$]*`).
//! - Values: a message's properties ([`Properties`]): its user properties, `TAGS` (its tag) and
//!   `KEYS` (its keys, space-separated), all strings.
//! - Evaluation (`eval.rs`) is three-valued, as in SQL and RocketMQ: a comparison with a missing
//!   property is unknown, and so is one whose operands do not compare (a property that is not
//!   a number compared with a number); NOT unknown is unknown; a message matches only when
//!   the whole is true. A property compared with a number is read as a number.
//!
//! Where RocketMQ's parser (5.x) behaves by accident, this one does not, and says so with a
//! position: it ignores text after the first complete expression (`a = 1 b`, `a LIKE 'x'`
//! accepted as `a`); it binds NOT tighter than comparisons (`NOT a = 1` is `(NOT a) = 1`,
//! never true; here it is `NOT (a = 1)`); it refuses `0.0`; a string property compared with
//! `3` must be an integer (`'3.5' > 3` makes the whole expression fail); `a = b` with both
//! missing is true. docs/compatibility.md lists these.

mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

pub use parser::MAX_DEPTH;
pub use parser::MAX_IN;

/// A syntax or type error in an expression, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl SqlError {
    fn at(pos: lexer::Pos, message: impl Into<String>) -> Self {
        Self {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for SqlError {}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Cmp {
    fn from_op(op: &str) -> Cmp {
        match op {
            "=" => Cmp::Eq,
            "<>" => Cmp::Ne,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "<" => Cmp::Lt,
            _ => Cmp::Le,
        }
    }
}

/// A string test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// `CONTAINS`
    Contains,
    /// `STARTSWITH`
    StartsWith,
    /// `ENDSWITH`
    EndsWith,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Lit(Value),
    /// A property's value.
    Prop(String),
    /// Unary minus.
    Neg(Box<Expr>),
    /// `NOT`
    Not(Box<Expr>),
    /// `AND`
    And(Box<Expr>, Box<Expr>),
    /// `OR`
    Or(Box<Expr>, Box<Expr>),
    /// A comparison.
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    /// `IS NULL`, or with `true` `IS NOT NULL`.
    IsNull(Box<Expr>, bool),
    /// `[NOT] BETWEEN lo AND hi` (inclusive).
    Between {
        /// The value tested.
        v: Box<Expr>,
        /// Lower bound.
        lo: Box<Expr>,
        /// Upper bound.
        hi: Box<Expr>,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `prop [NOT] IN (…)`.
    In {
        /// The property.
        prop: String,
        /// The strings.
        list: BTreeSet<String>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `v [NOT] CONTAINS|STARTSWITH|ENDSWITH 'pat'`.
    Text {
        /// Which test.
        op: Text,
        /// The value tested.
        v: Box<Expr>,
        /// The string constant.
        pat: String,
        /// The `NOT` form.
        negated: bool,
    },
}

/// Where an expression reads a message's properties.
pub trait Properties {
    /// The value of property `name`, if the message has it.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Properties for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// A compiled SQL92 filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql92 {
    expr: Expr,
}

impl Sql92 {
    /// Parses `text`; the error names the line and column of the first problem.
    pub fn parse(text: &str) -> Result<Sql92, SqlError> {
        let tokens = lexer::tokens(text)?;
        Ok(Sql92 {
            expr: parser::parse(tokens)?,
        })
    }

    /// True only if the expression is true for a message with `props` (not if it is false or
    /// unknown).
    pub fn matches(&self, props: &impl Properties) -> bool {
        eval::truth(&self.expr, props) == Some(true)
    }

    /// The expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The properties it reads (a message without any of them matches only an expression
    /// that is true without them).
    pub fn properties(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        eval::properties(&self.expr, &mut out);
        out
    }
}
