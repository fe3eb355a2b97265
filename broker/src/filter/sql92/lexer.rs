//! Tokens of a SQL92 filter expression, each with its line and column (1-based, in
//! characters), so every error can say where it is.

use super::SqlError;

/// Where a token starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

/// Keywords (case-insensitive, as in RocketMQ; identifiers are case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kw {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
}

impl Kw {
    fn parse(word: &str) -> Option<Kw> {
        const ALL: [(&str, Kw); 12] = [
            ("NOT", Kw::Not),
            ("AND", Kw::And),
            ("OR", Kw::Or),
            ("BETWEEN", Kw::Between),
            ("IN", Kw::In),
            ("TRUE", Kw::True),
            ("FALSE", Kw::False),
            ("NULL", Kw::Null),
            ("IS", Kw::Is),
            ("CONTAINS", Kw::Contains),
            ("STARTSWITH", Kw::StartsWith),
            ("ENDSWITH", Kw::EndsWith),
        ];
        ALL.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(word))
            .map(|(_, kw)| *kw)
    }
}

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A property name.
    Ident(String),
    /// A string constant (quotes removed, `''` made `'`).
    Str(String),
    /// An integer constant.
    Int(i64),
    /// A floating-point constant.
    Float(f64),
    /// A keyword.
    Kw(Kw),
    /// `=`, `<>`, `>`, `>=`, `<`, `<=`, `+` or `-`.
    Op(&'static str),
    /// `(`
    Open,
    /// `)`
    Close,
    /// `,`
    Comma,
    /// The end of the text.
    End,
}

/// Splits `text` into tokens, ending with [`Tok::End`].
pub fn tokens(text: &str) -> Result<Vec<(Tok, Pos)>, SqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut column) = (0usize, 1u32, 1u32);
    // Moves past `n` characters, keeping the position.
    let advance = |i: &mut usize, line: &mut u32, column: &mut u32, n: usize| {
        for _ in 0..n {
            if chars.get(*i) == Some(&'\n') {
                *line += 1;
                *column = 1;
            } else {
                *column += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let pos = Pos { line, column };
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}') {
            advance(&mut i, &mut line, &mut column, 1);
            continue;
        }
        // `-- comment` to the end of the line (or of the text), `/* comment */`.
        if c == '-' && next == Some('-') {
            let n = chars[i..].iter().take_while(|c| **c != '\n').count();
            advance(&mut i, &mut line, &mut column, n);
            continue;
        }
        if c == '/' && next == Some('*') {
            let rest: String = chars[i + 2..].iter().collect();
            let Some(end) = rest.find("*/") else {
                return Err(SqlError::at(pos, "a comment is not closed (*/)"));
            };
            let n = 2 + rest[..end].chars().count() + 2;
            advance(&mut i, &mut line, &mut column, n);
            continue;
        }
        let (tok, len) = match c {
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            ',' => (Tok::Comma, 1),
            '=' => (Tok::Op("="), 1),
            '+' => (Tok::Op("+"), 1),
            '-' => (Tok::Op("-"), 1),
            '<' if next == Some('>') => (Tok::Op("<>"), 2),
            '<' if next == Some('=') => (Tok::Op("<="), 2),
            '<' => (Tok::Op("<"), 1),
            '>' if next == Some('=') => (Tok::Op(">="), 2),
            '>' => (Tok::Op(">"), 1),
            '\'' => string(&chars[i..], pos)?,
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|d| d.is_ascii_digit())) => {
                number(&chars[i..], pos)?
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_' || **c == '$')
                    .count();
                let word: String = chars[i..i + len].iter().collect();
                match Kw::parse(&word) {
                    Some(kw) => (Tok::Kw(kw), len),
                    None => (Tok::Ident(word), len),
                }
            }
            other => {
                return Err(SqlError::at(pos, format!("unexpected character {other:?}")));
            }
        };
        out.push((tok, pos));
        advance(&mut i, &mut line, &mut column, len);
    }
    out.push((Tok::End, Pos { line, column }));
    Ok(out)
}

/// A string constant at the start of `s` (which starts with its opening quote).
fn string(s: &[char], pos: Pos) -> Result<(Tok, usize), SqlError> {
    let mut value = String::new();
    let mut i = 1;
    loop {
        match s.get(i) {
            None => return Err(SqlError::at(pos, "a string is not closed (')")),
            Some('\'') if s.get(i + 1) == Some(&'\'') => {
                value.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((Tok::Str(value), i + 1)),
            Some(c) => {
                value.push(*c);
                i += 1;
            }
        }
    }
}

/// A number at the start of `s`: digits with an optional `L`; or a decimal point and/or an
/// exponent (a floating-point constant). Constants are never negative (`-` is an operator).
fn number(s: &[char], pos: Pos) -> Result<(Tok, usize), SqlError> {
    let digits = |from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = digits(0);
    let mut float = false;
    if s.get(i) == Some(&'.') {
        float = true;
        i += 1 + digits(i + 1);
    }
    if matches!(s.get(i), Some('e' | 'E')) {
        let sign = usize::from(matches!(s.get(i + 1), Some('+' | '-')));
        let exp = digits(i + 1 + sign);
        if exp == 0 {
            return Err(SqlError::at(pos, "a number's exponent has no digits"));
        }
        float = true;
        i += 1 + sign + exp;
    }
    let text: String = s[..i].iter().collect();
    if float {
        return match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok((Tok::Float(f), i)),
            _ => Err(SqlError::at(pos, format!("{text} is out of range"))),
        };
    }
    let suffix = usize::from(matches!(s.get(i), Some('l' | 'L')));
    match text.parse::<i64>() {
        Ok(n) => Ok((Tok::Int(n), i + suffix)),
        Err(_) => Err(SqlError::at(
            pos,
            format!("{text} is out of range (a 64-bit integer)"),
        )),
    }
}
