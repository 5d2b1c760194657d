//! Values compared as their PostgreSQL type: integers as integers, `numeric`
//! as exact decimals, timestamps as instants, text as text. Filter literals
//! are converted once, when a filter is compiled; column values are parsed
//! from their text form on each comparison, without allocating.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};

use crate::decode::types::{pg_type, Base, PgType};

/// How a column's values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeClass {
    /// int2, int4, int8, oid, xid.
    Integer,
    /// float4, float8.
    Float,
    /// numeric.
    Numeric,
    /// boolean.
    Bool,
    /// timestamp with time zone: an instant.
    TimestampTz,
    /// timestamp without time zone.
    Timestamp,
    /// date.
    Date,
    /// text, varchar, char, name, citext-like and every type whose text form
    /// is what users compare (uuid, enums...).
    Text,
    /// Types with no useful order or text semantics (json, arrays, bytea...):
    /// equality on the text form only.
    Opaque,
}

impl TypeClass {
    /// The class of a type OID.
    pub fn of(type_oid: u32) -> TypeClass {
        match pg_type(type_oid) {
            PgType::Scalar(Base::Integer) => TypeClass::Integer,
            PgType::Scalar(Base::Float) => TypeClass::Float,
            PgType::Scalar(Base::Numeric) => TypeClass::Numeric,
            PgType::Scalar(Base::Bool) => TypeClass::Bool,
            PgType::Scalar(Base::TimestampTz) => TypeClass::TimestampTz,
            PgType::Scalar(Base::Timestamp) => TypeClass::Timestamp,
            PgType::Scalar(Base::Date) => TypeClass::Date,
            PgType::Scalar(Base::Json | Base::Bytea | Base::Unordered) | PgType::Array(_) => {
                TypeClass::Opaque
            }
            // Times compare as text: `HH:MM:SS[.f]` sorts in time order.
            PgType::Scalar(Base::Text | Base::Time | Base::TimeTz) => TypeClass::Text,
        }
    }

    /// Whether `<`, `>`, `<=`, `>=` make sense.
    pub fn is_ordered(self) -> bool {
        !matches!(self, TypeClass::Bool | TypeClass::Opaque)
    }

    /// Whether text operators (`contains`, `matches`...) make sense.
    pub fn is_text(self) -> bool {
        self == TypeClass::Text
    }

    /// A name for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            TypeClass::Integer => "an integer",
            TypeClass::Float => "a floating-point",
            TypeClass::Numeric => "a numeric",
            TypeClass::Bool => "a boolean",
            TypeClass::TimestampTz => "a timestamp with time zone",
            TypeClass::Timestamp => "a timestamp",
            TypeClass::Date => "a date",
            TypeClass::Text => "a text",
            TypeClass::Opaque => "a json, array or binary",
        }
    }
}

/// A filter literal, converted to the column's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// Integer.
    Integer(i64),
    /// Float.
    Float(f64),
    /// Exact decimal.
    Numeric(Decimal),
    /// Boolean.
    Bool(bool),
    /// Instant.
    TimestampTz(DateTime<FixedOffset>),
    /// Wall-clock time.
    Timestamp(NaiveDateTime),
    /// Date.
    Date(NaiveDate),
    /// Text (also the text form of opaque types).
    Text(String),
}

/// Converts a YAML/JSON literal to `class`; `Err` says why it does not fit.
pub fn literal(class: TypeClass, value: &serde_json::Value) -> Result<Literal, String> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        other => return Err(format!("{other} is not a scalar")),
    };
    let fail = || format!("{value} is not {} value", class.describe());
    match class {
        TypeClass::Integer => text
            .trim()
            .parse()
            .map(Literal::Integer)
            .map_err(|_| fail()),
        TypeClass::Float => text.trim().parse().map(Literal::Float).map_err(|_| fail()),
        TypeClass::Numeric => Decimal::parse(text.trim())
            .map(Literal::Numeric)
            .ok_or_else(fail),
        TypeClass::Bool => match text.trim() {
            "true" | "t" => Ok(Literal::Bool(true)),
            "false" | "f" => Ok(Literal::Bool(false)),
            _ => Err(fail()),
        },
        TypeClass::TimestampTz => parse_instant(text.trim())
            .map(Literal::TimestampTz)
            .ok_or_else(|| {
                format!(
                    "{value} is not a timestamp with a UTC offset (e.g. 2024-01-31T12:00:00+01:00)"
                )
            }),
        TypeClass::Timestamp => parse_wall_clock(text.trim())
            .map(Literal::Timestamp)
            .ok_or_else(fail),
        TypeClass::Date => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(Literal::Date)
            .map_err(|_| fail()),
        TypeClass::Text | TypeClass::Opaque => Ok(Literal::Text(text)),
    }
}

/// Compares a column's text value with a literal of its class; `None` when the
/// value does not parse (for example `infinity` against a date).
pub fn compare(class: TypeClass, value: &str, lit: &Literal) -> Option<Ordering> {
    match (class, lit) {
        (TypeClass::Integer, Literal::Integer(l)) => value.parse::<i64>().ok().map(|v| v.cmp(l)),
        (TypeClass::Float, Literal::Float(l)) => {
            parse_pg_float(value).and_then(|v| v.partial_cmp(l))
        }
        (TypeClass::Numeric, Literal::Numeric(l)) => Decimal::parse(value).map(|v| v.cmp(l)),
        (TypeClass::Bool, Literal::Bool(l)) => match value {
            "t" => Some(true.cmp(l)),
            "f" => Some(false.cmp(l)),
            _ => None,
        },
        (TypeClass::TimestampTz, Literal::TimestampTz(l)) => parse_instant(value).map(|v| v.cmp(l)),
        (TypeClass::Timestamp, Literal::Timestamp(l)) => parse_wall_clock(value).map(|v| v.cmp(l)),
        (TypeClass::Date, Literal::Date(l)) => NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .ok()
            .map(|v| v.cmp(l)),
        (TypeClass::Text | TypeClass::Opaque, Literal::Text(l)) => Some(value.cmp(l.as_str())),
        _ => None,
    }
}

/// Compares two text values of one column as its type (for `changed`).
pub fn same_value(class: TypeClass, a: &str, b: &str) -> bool {
    match class {
        TypeClass::Integer => match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        TypeClass::Float => match (parse_pg_float(a), parse_pg_float(b)) {
            (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => a == b,
        },
        TypeClass::Numeric => match (Decimal::parse(a), Decimal::parse(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        TypeClass::TimestampTz => match (parse_instant(a), parse_instant(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => a == b,
    }
}

fn parse_pg_float(s: &str) -> Option<f64> {
    match s {
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// RFC 3339 (`2024-01-31T12:00:00Z`) or PostgreSQL's form
/// (`2024-01-31 12:00:00.5+01`).
fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z").ok())
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%#z").ok())
}

fn parse_wall_clock(s: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok())
}

/// An exact decimal of any size, ordered as PostgreSQL orders `numeric`
/// (`-Infinity` < numbers < `Infinity` < `NaN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decimal {
    /// -Infinity.
    NegInfinity,
    /// A finite number: sign, integer digits without leading zeros, fraction
    /// digits without trailing zeros (zero is positive with no digits).
    Finite {
        /// Sign.
        negative: bool,
        /// Integer digits.
        int: String,
        /// Fraction digits.
        frac: String,
    },
    /// Infinity.
    Infinity,
    /// NaN (equal to itself, above everything, as in PostgreSQL).
    NaN,
}

impl Decimal {
    /// Parses `-12.50`, `1e3`, `.5`, `NaN`, `Infinity`.
    pub fn parse(s: &str) -> Option<Decimal> {
        match s {
            "NaN" => return Some(Decimal::NaN),
            "Infinity" | "+Infinity" | "inf" => return Some(Decimal::Infinity),
            "-Infinity" | "-inf" => return Some(Decimal::NegInfinity),
            _ => {}
        }
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Shift the decimal point by the exponent, within reason.
        if exp.unsigned_abs() > 1000 {
            return None;
        }
        let digits: String = format!("{int}{frac}");
        let point = i64::try_from(int.len()).ok()? + i64::from(exp);
        let (int, frac) = if point <= 0 {
            (
                String::new(),
                format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_owned(),
                digits[point as usize..].to_owned(),
            )
        };
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        let zero = int.is_empty() && frac.is_empty();
        Some(Decimal::Finite {
            negative: negative && !zero,
            int,
            frac,
        })
    }

    fn rank(&self) -> u8 {
        match self {
            Decimal::NegInfinity => 0,
            Decimal::Finite { .. } => 1,
            Decimal::Infinity => 2,
            Decimal::NaN => 3,
        }
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (
            Decimal::Finite {
                negative: na,
                int: ia,
                frac: fa,
            },
            Decimal::Finite {
                negative: nb,
                int: ib,
                frac: fb,
            },
        ) = (self, other)
        else {
            return self.rank().cmp(&other.rank());
        };
        let magnitude = ia
            .len()
            .cmp(&ib.len())
            .then_with(|| ia.cmp(ib))
            .then_with(|| fa.as_str().cmp(fb.as_str()));
        match (na, nb) {
            (false, false) => magnitude,
            (true, true) => magnitude.reverse(),
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn decimals_compare_exactly() {
        assert!(dec("10.5") > dec("9.75"));
        assert_eq!(dec("1.10"), dec("1.1"));
        assert_eq!(dec("-0.0"), dec("0"));
        assert!(dec("-2") < dec("-1.5"));
        assert!(
            dec("123456789012345678901234567890.000000001") > dec("123456789012345678901234567890")
        );
        assert_eq!(dec("1e3"), dec("1000"));
        assert_eq!(dec("1.5E-2"), dec("0.015"));
        assert!(
            dec("NaN") > dec("Infinity")
                && dec("Infinity") > dec("1e100")
                && dec("-Infinity") < dec("-1e100")
        );
        assert_eq!(Decimal::parse("1.2.3"), None);
        assert_eq!(Decimal::parse("abc"), None);
        assert_eq!(Decimal::parse("-"), None);
    }

    #[test]
    fn literals_take_the_column_type() {
        assert_eq!(
            literal(TypeClass::Integer, &json!("42")),
            Ok(Literal::Integer(42))
        );
        assert!(literal(TypeClass::Integer, &json!("4.2")).is_err());
        assert_eq!(
            literal(TypeClass::Numeric, &json!(10.5)),
            Ok(Literal::Numeric(dec("10.5")))
        );
        assert_eq!(
            literal(TypeClass::Bool, &json!(true)),
            Ok(Literal::Bool(true))
        );
        assert!(
            literal(TypeClass::TimestampTz, &json!("2024-01-01 00:00:00"))
                .expect_err("must fail")
                .contains("UTC offset")
        );
        assert_eq!(
            literal(TypeClass::Text, &json!(7)),
            Ok(Literal::Text("7".into()))
        );
    }

    #[test]
    fn timestamps_compare_as_instants_across_zones() {
        let lit =
            literal(TypeClass::TimestampTz, &json!("2024-01-01T10:00:00+02:00")).expect("valid");
        // PostgreSQL sends UTC in our sessions: 08:00 UTC is the same instant.
        assert_eq!(
            compare(TypeClass::TimestampTz, "2024-01-01 08:00:00+00", &lit),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(TypeClass::TimestampTz, "2024-01-01 08:00:00.5+00", &lit),
            Some(Ordering::Greater)
        );
        assert_eq!(compare(TypeClass::TimestampTz, "infinity", &lit), None);
        let naive = literal(TypeClass::Timestamp, &json!("2024-01-01T10:00:00")).expect("valid");
        assert_eq!(
            compare(TypeClass::Timestamp, "2024-01-01 09:59:59.999", &naive),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn numbers_are_not_compared_as_strings() {
        let ten = literal(TypeClass::Integer, &json!(10)).expect("valid");
        assert_eq!(compare(TypeClass::Integer, "9", &ten), Some(Ordering::Less));
        let lit = literal(TypeClass::Numeric, &json!("9.75")).expect("valid");
        assert_eq!(
            compare(TypeClass::Numeric, "10.5", &lit),
            Some(Ordering::Greater)
        );
        assert!(same_value(TypeClass::Numeric, "1.50", "1.5"));
        assert!(!same_value(TypeClass::Integer, "1", "2"));
    }

    proptest! {
        #[test]
        fn decimal_order_agrees_with_integers(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, sa in 0u32..4, sb in 0u32..4) {
            // a / 10^sa written as a decimal string.
            let render = |v: i64, s: u32| {
                let p = 10i64.pow(s);
                let (sign, v) = if v < 0 { ("-", -v) } else { ("", v) };
                format!("{sign}{}.{:0width$}", v / p, v % p, width = s as usize)
            };
            let (x, y) = (dec(&render(a, sa)), dec(&render(b, sb)));
            let exact = (i128::from(a) * 10i128.pow(sb)).cmp(&(i128::from(b) * 10i128.pow(sa)));
            prop_assert_eq!(x.cmp(&y), exact);
        }
    }
}
