//! Row rules: a tiny, typed expression language over the columns of one record.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | operand (cmp operand | "is" ["not"] "null")
//! operand := column [("+" | "-") number unit] | number | 'text' | true | false
//! unit    := seconds | minutes | hours | days     (timestamp and date columns only)
//! cmp     := == | != | < | <= | > | >=
//! ```
//! Nulls follow SQL CHECK semantics: a comparison with a null is unknown, and a rule fails only
//! when it is definitely false. Whether a value may be null is the column's `required` flag.

use crate::contract::value::{ColumnType, InputKind, Value, convert};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Column(usize),
    /// A timestamp or date column moved by a fixed amount (`enqueued_at + 5 minutes`).
    Shifted(usize, chrono::Duration),
    Literal(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Compare(Operand, CmpOp, Operand),
    IsNull(Operand, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// Resolves column names to (index, type) while compiling.
pub trait Columns {
    fn lookup(&self, name: &str) -> Option<(usize, ColumnType)>;
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(f64, bool),
    Text(String),
    Op(CmpOp),
    Plus,
    Minus,
    Open,
    Close,
}

pub fn compile(source: &str, columns: &dyn Columns) -> Result<Expr, String> {
    let tokens = tokenize(source)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        columns,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some(t) => Err(format!("unexpected {} after a complete expression", describe(t))),
    }
}

/// `Some(true)` holds, `Some(false)` fails, `None` is unknown (a null was involved).
pub fn eval(expr: &Expr, row: &[Value]) -> Option<bool> {
    match expr {
        Expr::Compare(a, op, b) => compare(&operand(a, row), *op, &operand(b, row)),
        Expr::IsNull(a, negated) => Some(operand(a, row).is_null() != *negated),
        Expr::Not(e) => eval(e, row).map(|v| !v),
        Expr::And(a, b) => match (eval(a, row), eval(b, row)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, row), eval(b, row)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
    }
}

fn operand<'a>(o: &'a Operand, row: &'a [Value]) -> std::borrow::Cow<'a, Value> {
    use std::borrow::Cow;
    match o {
        Operand::Column(i) => Cow::Borrowed(row.get(*i).unwrap_or(&Value::Null)),
        Operand::Shifted(i, by) => Cow::Owned(match row.get(*i) {
            Some(Value::Timestamp(t)) => t.checked_add_signed(*by).map_or(Value::Null, Value::Timestamp),
            Some(Value::Date(d)) => d.checked_add_signed(*by).map_or(Value::Null, Value::Date),
            _ => Value::Null,
        }),
        Operand::Literal(v) => Cow::Borrowed(v),
    }
}

fn compare(a: &Value, op: CmpOp, b: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (x, y) => x.as_f64()?.partial_cmp(&y.as_f64()?)?,
    };
    Some(match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    })
}

fn tokenize(source: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => (tokens.push(Token::Open), i += 1).1,
            '+' => (tokens.push(Token::Plus), i += 1).1,
            '-' if !next.is_some_and(|n| n.is_ascii_digit()) => (tokens.push(Token::Minus), i += 1).1,
            ')' => (tokens.push(Token::Close), i += 1).1,
            '=' | '!' | '<' | '>' => {
                let (op, len) = match (c, next) {
                    ('=', Some('=')) => (CmpOp::Eq, 2),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('<', Some('>')) => (CmpOp::Ne, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', _) => (CmpOp::Gt, 1),
                    ('=', _) => (CmpOp::Eq, 1),
                    _ => return Err(format!("'{c}' must be followed by '=' at character {}", i + 1)),
                };
                tokens.push(Token::Op(op));
                i += len;
            }
            '\'' => {
                let start = i + 1;
                let end = (start..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .ok_or_else(|| format!("unterminated 'text' starting at character {}", i + 1))?;
                tokens.push(Token::Text(chars[start..end].iter().collect()));
                i = end + 1;
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let value = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
                tokens.push(Token::Number(value, !text.contains('.')));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character {other:?} at character {}", i + 1)),
        }
    }
    Ok(tokens)
}

fn describe(t: &Token) -> String {
    match t {
        Token::Ident(s) => format!("'{s}'"),
        Token::Number(n, _) => format!("number {n}"),
        Token::Text(s) => format!("text '{s}'"),
        Token::Op(op) => format!("operator {op:?}"),
        Token::Plus => "'+'".into(),
        Token::Minus => "'-'".into(),
        Token::Open => "'('".into(),
        Token::Close => "')'".into(),
    }
}

/// A parsed operand before its literal is typed against the other side of the comparison.
enum Raw {
    Column(usize, ColumnType),
    Shifted(usize, ColumnType, chrono::Duration),
    Number(f64, bool),
    Text(String),
    Bool(bool),
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    columns: &'a dyn Columns,
}

impl Parser<'_> {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Ident(s)) if s.eq_ignore_ascii_case(keyword))
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek_keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.tokens.get(self.pos) == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.or()?;
            return match self.next() {
                Some(Token::Close) => Ok(inner),
                _ => Err("missing ')'".into()),
            };
        }
        let left = self.raw_operand()?;
        if self.peek_keyword("is") {
            self.pos += 1;
            let negated = self.peek_keyword("not");
            if negated {
                self.pos += 1;
            }
            if !self.peek_keyword("null") {
                return Err("expected 'null' after 'is' / 'is not'".into());
            }
            self.pos += 1;
            let operand = typed(left, None)?;
            return Ok(Expr::IsNull(operand, negated));
        }
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            Some(t) => {
                return Err(format!(
                    "expected a comparison (==, !=, <, <=, >, >=), found {}",
                    describe(&t)
                ));
            }
            None => return Err("expected a comparison (==, !=, <, <=, >, >=) at the end".into()),
        };
        let right = self.raw_operand()?;
        let (lt, rt) = (raw_type(&left), raw_type(&right));
        let a = typed(left, rt)?;
        let b = typed(right, lt)?;
        check_comparable(&a, &b, lt, rt, op)?;
        Ok(Expr::Compare(a, op, b))
    }

    /// `5 minutes`, `300 seconds`, `1 day`.
    fn duration(&mut self) -> Result<chrono::Duration, String> {
        let amount = match self.next() {
            Some(Token::Number(n, true)) if n.abs() < 1e9 => n as i64,
            _ => return Err("expected a whole number and a unit after '+' / '-' (e.g. 5 minutes)".into()),
        };
        let unit = match self.next() {
            Some(Token::Ident(u)) => u,
            _ => return Err("expected a unit (seconds, minutes, hours, days)".into()),
        };
        let seconds = match unit.trim_end_matches('s') {
            "second" => 1,
            "minute" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            other => return Err(format!("unknown unit '{other}' (seconds, minutes, hours, days)")),
        };
        Ok(chrono::Duration::seconds(amount * seconds))
    }

    fn raw_operand(&mut self) -> Result<Raw, String> {
        match self.next() {
            Some(Token::Number(n, integral)) => Ok(Raw::Number(n, integral)),
            Some(Token::Text(s)) => Ok(Raw::Text(s)),
            Some(Token::Ident(s)) if s == "true" || s == "false" => Ok(Raw::Bool(s == "true")),
            Some(Token::Ident(name)) => {
                let (i, ty) = self
                    .columns
                    .lookup(&name)
                    .ok_or_else(|| format!("unknown column '{name}'"))?;
                let sign = match self.tokens.get(self.pos) {
                    Some(Token::Plus) => 1,
                    Some(Token::Minus) => -1,
                    _ => return Ok(Raw::Column(i, ty)),
                };
                self.pos += 1;
                let by = self.duration()? * sign;
                match ty {
                    ColumnType::Timestamp => Ok(Raw::Shifted(i, ty, by)),
                    ColumnType::Date if by.num_seconds() % 86_400 == 0 => Ok(Raw::Shifted(i, ty, by)),
                    ColumnType::Date => Err(format!("'{name}' is a date: shift it by whole days")),
                    _ => Err(format!(
                        "only timestamp and date columns can be shifted, '{name}' is {}",
                        ty.name()
                    )),
                }
            }
            Some(t) => Err(format!("expected a column or a value, found {}", describe(&t))),
            None => Err("expected a column or a value at the end".into()),
        }
    }
}

fn raw_type(r: &Raw) -> Option<ColumnType> {
    match r {
        Raw::Column(_, ty) | Raw::Shifted(_, ty, _) => Some(*ty),
        _ => None,
    }
}

/// Types a literal against the column it is compared with, so `'2000-01-01'` compares as a date.
fn typed(raw: Raw, other: Option<ColumnType>) -> Result<Operand, String> {
    Ok(match raw {
        Raw::Column(i, _) => Operand::Column(i),
        Raw::Shifted(i, _, by) => Operand::Shifted(i, by),
        Raw::Bool(b) => Operand::Literal(Value::Bool(b)),
        Raw::Number(n, true) if n.abs() < 9.0e15 => Operand::Literal(Value::Int64(n as i64)),
        Raw::Number(n, _) => Operand::Literal(Value::Float64(n)),
        Raw::Text(s) => match other {
            Some(ty @ (ColumnType::Date | ColumnType::Timestamp)) => {
                let v = convert(Some(&serde_json::Value::String(s)), ty, InputKind::Text)?;
                Operand::Literal(v)
            }
            _ => Operand::Literal(Value::String(s)),
        },
    })
}

fn check_comparable(
    a: &Operand,
    b: &Operand,
    lt: Option<ColumnType>,
    rt: Option<ColumnType>,
    op: CmpOp,
) -> Result<(), String> {
    let kind = |o: &Operand, t: Option<ColumnType>| match (o, t) {
        (_, Some(ColumnType::ListOfString | ColumnType::ListOfInt64)) => "list",
        (_, Some(ColumnType::String)) | (Operand::Literal(Value::String(_)), None) => "text",
        (_, Some(ColumnType::Bool)) | (Operand::Literal(Value::Bool(_)), None) => "bool",
        (_, Some(ColumnType::Date)) | (Operand::Literal(Value::Date(_)), _) => "date",
        (_, Some(ColumnType::Timestamp)) | (Operand::Literal(Value::Timestamp(_)), _) => "timestamp",
        _ => "number",
    };
    let (ka, kb) = (kind(a, lt), kind(b, rt));
    if ka == "list" || kb == "list" {
        return Err("list columns cannot be compared; use column rules".into());
    }
    if ka != kb {
        return Err(format!("cannot compare {ka} with {kb}"));
    }
    if ka == "bool" && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
        return Err("bools only compare with == or !=".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cols;
    impl Columns for Cols {
        fn lookup(&self, name: &str) -> Option<(usize, ColumnType)> {
            match name {
                "position" => Some((0, ColumnType::Int64)),
                "duration" => Some((1, ColumnType::Int64)),
                "kind" => Some((2, ColumnType::String)),
                "day" => Some((3, ColumnType::Date)),
                _ => None,
            }
        }
    }

    fn row(p: Option<i64>, d: i64, kind: &str) -> Vec<Value> {
        vec![
            p.map_or(Value::Null, Value::Int64),
            Value::Int64(d),
            Value::String(kind.into()),
            Value::Null,
        ]
    }

    #[test]
    fn compares_columns_with_null_as_unknown() {
        let e = compile("position <= duration", &Cols).expect("compiles");
        assert_eq!(eval(&e, &row(Some(5), 10, "x")), Some(true));
        assert_eq!(eval(&e, &row(Some(11), 10, "x")), Some(false));
        assert_eq!(eval(&e, &row(None, 10, "x")), None);
    }

    #[test]
    fn conditional_requirement() {
        let e = compile("kind != 'finished' or position is not null", &Cols).expect("compiles");
        assert_eq!(eval(&e, &row(None, 1, "finished")), Some(false));
        assert_eq!(eval(&e, &row(None, 1, "started")), Some(true));
        assert_eq!(eval(&e, &row(Some(1), 1, "finished")), Some(true));
    }

    #[test]
    fn literals_take_the_type_of_their_column() {
        let e = compile("day >= '2000-01-01'", &Cols).expect("compiles");
        let mut r = row(None, 1, "x");
        r[3] = Value::Date(chrono::NaiveDate::from_ymd_opt(1999, 12, 31).expect("date"));
        assert_eq!(eval(&e, &r), Some(false));
        assert!(compile("day >= 'soon'", &Cols).is_err());
    }

    #[test]
    fn timestamps_shift_by_durations() {
        struct Ts;
        impl Columns for Ts {
            fn lookup(&self, name: &str) -> Option<(usize, ColumnType)> {
                match name {
                    "occurred_at" => Some((0, ColumnType::Timestamp)),
                    "enqueued_at" => Some((1, ColumnType::Timestamp)),
                    "n" => Some((2, ColumnType::Int64)),
                    _ => None,
                }
            }
        }
        let e = compile("occurred_at <= enqueued_at + 5 minutes", &Ts).expect("compiles");
        let t = |s: &str| Value::Timestamp(crate::contract::value::parse_timestamp(s).expect("ts"));
        let row = |o: &str| vec![t(o), t("2024-05-01T10:00:00Z"), Value::Null];
        assert_eq!(eval(&e, &row("2024-05-01T10:05:00Z")), Some(true));
        assert_eq!(eval(&e, &row("2024-05-01T10:05:01Z")), Some(false));
        let back = compile("occurred_at >= enqueued_at - 2 days", &Ts).expect("compiles");
        assert_eq!(eval(&back, &row("2024-04-28T10:00:00Z")), Some(false));
        assert!(compile("n + 5 minutes > 3", &Ts).is_err());
        assert!(compile("occurred_at + 5 fortnights > enqueued_at", &Ts).is_err());
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        assert_eq!(compile("nope < 1", &Cols), Err("unknown column 'nope'".into()));
        assert!(
            compile("kind < 3", &Cols)
                .unwrap_err()
                .contains("cannot compare text with number")
        );
        assert!(compile("position <", &Cols).is_err());
        assert!(compile("(position < 1", &Cols).is_err());
        assert!(compile("position < 1 duration", &Cols).is_err());
    }
}
