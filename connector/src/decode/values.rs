//! PostgreSQL text-format values rendered as JSON, by type OID, written straight
//! into an output buffer (no intermediate `serde_json::Value` per column).
//!
//! The replication session pins `DateStyle=ISO`, `TimeZone=UTC`,
//! `IntervalStyle=iso_8601`, `bytea_output=hex` and `extra_float_digits=3`, so
//! the text forms handled here are the only ones PostgreSQL sends.

use base64::Engine as _;
use pgkafka_crds::{BinaryHandlingMode, DecimalHandlingMode, TimePrecisionMode};

use super::types::{array_delimiter, pg_type, Base, PgType};
use crate::event::Column;

/// Session settings that fix the text format of every value the decoder reads.
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 \
     -c bytea_output=hex -c extra_float_digits=3";

/// The value Debezium puts in place of an unchanged TOASTed column, which
/// PostgreSQL does not send; consumers already recognise it.
pub const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// How values are written: Debezium's handling modes, and whether json is
/// nested (the default) or a string holding it (the schema form's
/// `io.debezium.data.Json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ValueModes {
    /// `decimal.handling.mode`.
    pub decimal: DecimalHandlingMode,
    /// `time.precision.mode`.
    pub time: TimePrecisionMode,
    /// `binary.handling.mode`.
    pub binary: BinaryHandlingMode,
    /// json and jsonb as strings.
    pub json_as_text: bool,
}

/// What a scalar's rendering needs: its type, its column's modifier, modes.
#[derive(Clone, Copy)]
struct Scalar<'a> {
    base: Base,
    type_modifier: i32,
    modes: &'a ValueModes,
}

/// Appends the JSON rendering of one text-format value of `column`.
pub(crate) fn write_text_value(
    out: &mut Vec<u8>,
    column: &Column,
    text: &[u8],
    modes: &ValueModes,
) {
    let scalar = |base| Scalar {
        base,
        type_modifier: column.type_modifier,
        modes,
    };
    match pg_type(column.value_oid) {
        PgType::Scalar(base) => write_scalar(out, scalar(base), text),
        PgType::Array(element) => {
            let mark = out.len();
            let delimiter = array_delimiter(column.value_oid);
            if write_array(out, scalar(element), delimiter, text).is_err() {
                // Not an array literal we understand: keep the exact text.
                out.truncate(mark);
                write_string(out, text);
            }
        }
    }
}

/// Appends a binary-format value: base64 of its bytes (the engine asks for text
/// format; this only guards against a server that sends binary anyway).
pub fn write_binary_value(out: &mut Vec<u8>, raw: &[u8]) {
    write_str(out, &base64::engine::general_purpose::STANDARD.encode(raw));
}

fn write_scalar(out: &mut Vec<u8>, scalar: Scalar<'_>, text: &[u8]) {
    let modes = scalar.modes;
    match scalar.base {
        Base::Bool => match text {
            b"t" => out.extend_from_slice(b"true"),
            b"f" => out.extend_from_slice(b"false"),
            other => write_string(out, other),
        },
        Base::Integer if is_json_integer(text) => out.extend_from_slice(text),
        Base::Float if is_json_number(text) => out.extend_from_slice(text),
        Base::Numeric => match modes.decimal {
            DecimalHandlingMode::String => write_string(out, text),
            DecimalHandlingMode::Precise => {
                super::decimal::write_precise(out, scalar.type_modifier, text)
            }
            DecimalHandlingMode::Double => super::decimal::write_double(out, text),
        },
        // Trusted: json and jsonb only ever hold valid JSON, and their text
        // form is that JSON.
        Base::Json if !text.is_empty() && !modes.json_as_text => out.extend_from_slice(text),
        Base::Bytea => match text.strip_prefix(b"\\x").and_then(decode_hex) {
            Some(raw) => write_bytes(out, &raw, text, modes.binary),
            None => write_string(out, text),
        },
        Base::Timestamp | Base::TimestampTz | Base::Date | Base::Time | Base::TimeTz => {
            let mark = out.len();
            if !super::temporal::write_temporal(
                out,
                scalar.base,
                scalar.type_modifier,
                text,
                modes.time,
            ) {
                out.truncate(mark);
                write_string(out, text);
            }
        }
        _ => write_string(out, text),
    }
}

fn write_bytes(out: &mut Vec<u8>, raw: &[u8], hex: &[u8], mode: BinaryHandlingMode) {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    match mode {
        BinaryHandlingMode::Base64 => write_str(out, &STANDARD.encode(raw)),
        BinaryHandlingMode::Base64UrlSafe => write_str(out, &URL_SAFE.encode(raw)),
        // PostgreSQL's own hex output, without its `\x`, lower-cased.
        BinaryHandlingMode::Hex => write_str(
            out,
            &String::from_utf8_lossy(&hex[2..]).to_ascii_lowercase(),
        ),
    }
}

fn is_json_integer(t: &[u8]) -> bool {
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
}

/// JSON number grammar: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let mut i = usize::from(t.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && t[int_start] == b'0') {
        return false;
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == t.len()
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Writes `text` as a JSON string. PostgreSQL text is UTF-8 in a UTF-8
/// database; other bytes are replaced rather than producing invalid JSON.
pub(crate) fn write_string(out: &mut Vec<u8>, text: &[u8]) {
    match std::str::from_utf8(text) {
        Ok(s) => write_str(out, s),
        Err(_) => write_str(out, &String::from_utf8_lossy(text)),
    }
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Why an array literal was not understood.
struct NotAnArray;

/// Parses PostgreSQL's array literal (`{1,2,NULL}`, `{{a,b},{c,"d e"}}`,
/// `[0:1]={1,2}`) and writes nested JSON arrays; `delimiter` separates
/// elements (`;` for `box[]`).
fn write_array(
    out: &mut Vec<u8>,
    element: Scalar<'_>,
    delimiter: u8,
    text: &[u8],
) -> Result<(), NotAnArray> {
    let body = match text.first() {
        // Explicit bounds: `[lo:hi]={...}`; the bounds carry no values.
        Some(b'[') => {
            let eq = text.iter().position(|&b| b == b'=').ok_or(NotAnArray)?;
            &text[eq + 1..]
        }
        _ => text,
    };
    let mut i = 0;
    parse_level(out, (element, delimiter), body, &mut i)?;
    if i == body.len() {
        Ok(())
    } else {
        Err(NotAnArray)
    }
}

fn parse_level(
    out: &mut Vec<u8>,
    (element, delimiter): (Scalar<'_>, u8),
    t: &[u8],
    i: &mut usize,
) -> Result<(), NotAnArray> {
    if t.get(*i) != Some(&b'{') {
        return Err(NotAnArray);
    }
    *i += 1;
    out.push(b'[');
    if t.get(*i) == Some(&b'}') {
        *i += 1;
        out.push(b']');
        return Ok(());
    }
    let mut item = Vec::new();
    loop {
        match t.get(*i) {
            Some(b'{') => parse_level(out, (element, delimiter), t, i)?,
            Some(b'"') => {
                *i += 1;
                item.clear();
                loop {
                    match t.get(*i) {
                        Some(b'\\') => {
                            item.push(*t.get(*i + 1).ok_or(NotAnArray)?);
                            *i += 2;
                        }
                        Some(b'"') => {
                            *i += 1;
                            break;
                        }
                        Some(&c) => {
                            item.push(c);
                            *i += 1;
                        }
                        None => return Err(NotAnArray),
                    }
                }
                write_scalar(out, element, &item);
            }
            Some(_) => {
                let start = *i;
                while !matches!(t.get(*i), Some(&c) if c == delimiter || c == b'}') {
                    if *i >= t.len() {
                        return Err(NotAnArray);
                    }
                    *i += 1;
                }
                let raw = &t[start..*i];
                if raw.eq_ignore_ascii_case(b"NULL") {
                    out.extend_from_slice(b"null");
                } else {
                    write_scalar(out, element, raw);
                }
            }
            None => return Err(NotAnArray),
        }
        match t.get(*i) {
            Some(&c) if c == delimiter => {
                *i += 1;
                out.push(b',');
            }
            Some(b'}') => {
                *i += 1;
                out.push(b']');
                return Ok(());
            }
            _ => return Err(NotAnArray),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn render(oid: u32, text: &str) -> String {
        render_in(oid, -1, text, &ValueModes::default())
    }

    fn render_in(oid: u32, type_modifier: i32, text: &str, modes: &ValueModes) -> String {
        let column = Column {
            is_key: false,
            name: "c".into(),
            type_oid: oid,
            value_oid: oid,
            type_modifier,
        };
        let mut out = Vec::new();
        write_text_value(&mut out, &column, text.as_bytes(), modes);
        String::from_utf8(out).expect("utf8")
    }

    fn value(oid: u32, text: &str) -> serde_json::Value {
        serde_json::from_str(&render(oid, text)).expect("valid JSON")
    }

    #[test]
    fn scalars_keep_their_type() {
        use serde_json::json;
        assert_eq!(value(16, "t"), json!(true));
        assert_eq!(value(16, "f"), json!(false));
        assert_eq!(value(20, "-9223372036854775808"), json!(i64::MIN));
        assert_eq!(value(701, "1.5e+20"), json!(1.5e20));
        assert_eq!(value(701, "NaN"), json!("NaN"));
        assert_eq!(value(700, "-Infinity"), json!("-Infinity"));
        assert_eq!(
            render(1700, "12345678901234567890.000000001"),
            "\"12345678901234567890.000000001\""
        );
        assert_eq!(value(3802, r#"{"a": [1, "x"]}"#), json!({"a": [1, "x"]}));
        assert_eq!(value(17, "\\x00ff10"), json!("AP8Q"));
        assert_eq!(value(25, "tab\there \"q\" \\"), json!("tab\there \"q\" \\"));
        assert_eq!(
            value(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
    }

    #[test]
    fn timestamps_become_iso_8601() {
        use serde_json::json;
        assert_eq!(
            value(1114, "2024-02-29 13:04:05.123456"),
            json!("2024-02-29T13:04:05.123456")
        );
        assert_eq!(
            value(1184, "2024-02-29 13:04:05+00"),
            json!("2024-02-29T13:04:05Z")
        );
        assert_eq!(
            value(1184, "2024-02-29 13:04:05.5+05:30"),
            json!("2024-02-29T13:04:05.5+05:30")
        );
        assert_eq!(
            value(1184, "2024-02-29 13:04:05-08"),
            json!("2024-02-29T13:04:05-08:00")
        );
        assert_eq!(value(1184, "infinity"), json!("infinity"));
        assert_eq!(
            value(1114, "0044-03-15 12:00:00 BC"),
            json!("0044-03-15 12:00:00 BC")
        );
    }

    #[test]
    fn arrays_nest_and_keep_element_types() {
        use serde_json::json;
        assert_eq!(value(1007, "{1,2,NULL,-3}"), json!([1, 2, null, -3]));
        assert_eq!(value(1007, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
        assert_eq!(
            value(1009, r#"{plain,"with space","q\"uote",NULL,"NULL"}"#),
            json!(["plain", "with space", "q\"uote", null, "NULL"])
        );
        assert_eq!(value(1231, "{1.10,2}"), json!(["1.10", "2"]));
        assert_eq!(value(1000, "{t,f}"), json!([true, false]));
        assert_eq!(value(1007, "[0:1]={5,6}"), json!([5, 6]));
        assert_eq!(value(1007, "{}"), json!([]));
        assert_eq!(
            value(3807, r#"{"{\"a\": 1}","[2]"}"#),
            json!([{"a": 1}, [2]])
        );
        assert_eq!(value(1007, "{1,2"), json!("{1,2"));
    }

    #[test]
    fn modes_apply_to_scalars_and_array_elements() {
        use pgkafka_crds::TimePrecisionMode as T;
        use pgkafka_crds::{BinaryHandlingMode as B, DecimalHandlingMode as D};
        let modes = |decimal, time, binary, json_as_text| ValueModes {
            decimal,
            time,
            binary,
            json_as_text,
        };
        let adaptive = modes(D::Double, T::Adaptive, B::Hex, true);
        assert_eq!(
            render_in(1182, -1, "{1970-01-02,NULL}", &adaptive),
            "[1,null]"
        );
        assert_eq!(
            render_in(1231, -1, "{1.5,NaN}", &adaptive),
            r#"[1.5,"NaN"]"#
        );
        assert_eq!(render_in(17, -1, "\\x00FF", &adaptive), r#""00ff""#);
        assert_eq!(
            render_in(3802, -1, r#"{"a": 1}"#, &adaptive),
            r#""{\"a\": 1}""#
        );
        let url = modes(D::Precise, T::Connect, B::Base64UrlSafe, false);
        assert_eq!(render_in(17, -1, "\\xfbff", &url), r#""-_8=""#);
        // numeric(5,2)[] in precise mode: each element at the column's scale.
        assert_eq!(
            render_in(1231, (5 << 16 | 2) + 4, "{1.00}", &url),
            r#"["ZA=="]"#
        );
        assert_eq!(render_in(1083, 6, "00:00:01.5", &url), "1500");
    }

    #[test]
    fn arrays_of_any_built_in_are_arrays() {
        use serde_json::json;
        // box[] separates elements with ';' (a box holds commas).
        assert_eq!(
            value(1020, "{(1,1),(0,0);(3,3),(2,2)}"),
            json!(["(1,1),(0,0)", "(3,3),(2,2)"])
        );
        assert_eq!(
            value(1017, r#"{"(1,2)","(3,4)"}"#),
            json!(["(1,2)", "(3,4)"])
        );
        assert_eq!(
            value(1009, "{{a,NULL},{\"\",c}}"),
            json!([["a", null], ["", "c"]])
        );
    }

    proptest! {
        #[test]
        fn any_text_of_any_known_type_is_valid_json(oid in prop::sample::select(vec![16u32, 17, 20, 23, 25, 114, 700, 701, 1000, 1007, 1009, 1114, 1184, 1231, 1700, 3802, 3807]), text in "\\PC{0,40}") {
            // json/jsonb text is trusted to be JSON, so only check the others.
            prop_assume!(!matches!(oid, 114 | 3802 | 3807 | 199));
            let rendered = render(oid, &text);
            prop_assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok(), "{oid} {text:?} -> {rendered}");
        }
    }
}
