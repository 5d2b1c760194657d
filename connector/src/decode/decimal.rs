//! `numeric` values in Debezium's `decimal.handling.mode` forms. `string`
//! (the exact digits) is the default and lives in `values.rs`; this module
//! writes `precise` (the unscaled value as big-endian two's-complement
//! bytes, base64) and `double`.

use base64::Engine as _;
use num_bigint::BigInt;

/// The declared scale of a `numeric(p, s)` column; `None` when unconstrained.
/// PostgreSQL 15 packs `((p << 16) | (s & 0x7ff)) + 4`, `s` signed.
pub(crate) fn numeric_scale(type_modifier: i32) -> Option<i32> {
    (type_modifier >= 4).then(|| (((type_modifier - 4) & 0x7ff) ^ 1024) - 1024)
}

/// The declared precision of a `numeric(p, s)` column.
pub(crate) fn numeric_precision(type_modifier: i32) -> Option<i32> {
    (type_modifier >= 4).then(|| ((type_modifier - 4) >> 16) & 0xffff)
}

/// `-12.340` -> (unscaled `-12340`, scale 3); `None` for NaN and infinities.
fn unscaled(text: &[u8]) -> Option<(BigInt, i32)> {
    let text = std::str::from_utf8(text).ok()?;
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = format!("{int}{frac}");
    let scale = i32::try_from(frac.len()).ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, scale))
}

/// `value` × 10^(to - from): the unscaled value at another scale (exact:
/// PostgreSQL already rounded the value to its column's scale).
fn rescale(value: BigInt, from: i32, to: i32) -> BigInt {
    let ten = BigInt::from(10u8);
    if to >= from {
        value * ten.pow((to - from).unsigned_abs())
    } else {
        value / ten.pow((from - to).unsigned_abs())
    }
}

fn base64_bytes(value: &BigInt) -> String {
    base64::engine::general_purpose::STANDARD.encode(value.to_signed_bytes_be())
}

/// Writes `text` in `precise` mode: base64 bytes at the column's scale, or
/// `{"scale": s, "value": "<base64>"}` for an unconstrained column; null for
/// NaN and infinities, which neither form can hold.
pub(super) fn write_precise(out: &mut Vec<u8>, type_modifier: i32, text: &[u8]) {
    let Some((value, scale)) = unscaled(text) else {
        out.extend_from_slice(b"null");
        return;
    };
    match numeric_scale(type_modifier) {
        Some(declared) => {
            super::values::write_str(out, &base64_bytes(&rescale(value, scale, declared)))
        }
        None => {
            out.extend_from_slice(b"{\"scale\":");
            out.extend_from_slice(scale.to_string().as_bytes());
            out.extend_from_slice(b",\"value\":");
            super::values::write_str(out, &base64_bytes(&value));
            out.push(b'}');
        }
    }
}

/// Writes `text` in `double` mode: a JSON number, or the string PostgreSQL
/// wrote for NaN and infinities (JSON has no such numbers).
pub(super) fn write_double(out: &mut Vec<u8>, text: &[u8]) {
    match std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
    {
        Some(v) if v.is_finite() => {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &v);
        }
        _ => super::values::write_string(out, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn precise(typmod: i32, text: &str) -> String {
        let mut out = Vec::new();
        write_precise(&mut out, typmod, text.as_bytes());
        String::from_utf8(out).expect("utf8")
    }

    /// The typmod PostgreSQL stores for `numeric(p, s)`.
    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn precise_is_big_endian_twos_complement() {
        // 1234.50 at scale 2: 123450 = 0x01E23A.
        assert_eq!(precise(typmod(10, 2), "1234.50"), "\"AeI6\"");
        // -1.00 at scale 2: -100 = 0x9C.
        assert_eq!(precise(typmod(5, 2), "-1.00"), "\"nA==\"");
        // 128 needs a leading zero byte to stay positive.
        assert_eq!(precise(typmod(5, 0), "128"), "\"AIA=\"");
        assert_eq!(precise(typmod(5, 0), "0"), "\"AA==\"");
        // numeric(5, -2): 12300 is 123 at scale -2.
        assert_eq!(numeric_scale(typmod(5, -2)), Some(-2));
        assert_eq!(precise(typmod(5, -2), "12300"), "\"ew==\"");
        assert_eq!(precise(-1, "-0.5"), r#"{"scale":1,"value":"+w=="}"#);
        assert_eq!(precise(-1, "NaN"), "null");
        assert_eq!(precise(-1, "Infinity"), "null");
        assert_eq!(numeric_precision(typmod(40, 10)), Some(40));
        assert_eq!(numeric_scale(-1), None);
    }

    #[test]
    fn forty_digits_survive_precise() {
        let text = "-1234567890123456789012345678901234.567890";
        let out = precise(-1, text);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("value"))
            .expect("base64");
        let back = BigInt::from_signed_bytes_be(&bytes);
        assert_eq!(
            back.to_string(),
            "-1234567890123456789012345678901234567890"
        );
        assert_eq!(v["scale"], 6);
    }

    #[test]
    fn double_is_a_number_or_the_special_string() {
        let render = |t: &str| {
            let mut out = Vec::new();
            write_double(&mut out, t.as_bytes());
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(render("1234.50"), "1234.5");
        assert_eq!(render("-0.001"), "-0.001");
        assert_eq!(render("NaN"), "\"NaN\"");
        assert_eq!(render("-Infinity"), "\"-Infinity\"");
    }
}
