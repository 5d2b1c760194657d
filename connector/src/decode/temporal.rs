//! `date`, `time`, `timetz` and `timestamp` values in Debezium's
//! `time.precision.mode` forms. The session pins `DateStyle=ISO` and
//! `TimeZone=UTC`, so the text is always `YYYY-MM-DD[ BC]`,
//! `HH:MM:SS[.ffffff][+HH[:MM[:SS]]]` or the two joined by a space.

use std::io::Write as _;

use pgkafka_crds::TimePrecisionMode;

use super::types::Base;

/// What PostgreSQL's JDBC driver, and so Debezium, writes for
/// `timestamp 'infinity'` and `'-infinity'` in numeric modes.
const TIMESTAMP_INFINITY: i64 = 9_223_372_036_825_200_000;
const TIMESTAMP_MINUS_INFINITY: i64 = -9_223_372_036_832_400_000;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Writes a temporal value in `mode`; `false` when `text` is not a form this
/// module reads (the caller then writes the text as it is).
pub(super) fn write_temporal(
    out: &mut Vec<u8>,
    base: Base,
    type_modifier: i32,
    text: &[u8],
    mode: TimePrecisionMode,
) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let number = match (base, mode) {
        (Base::Timestamp | Base::TimestampTz, TimePrecisionMode::Isostring)
        | (Base::TimestampTz, _) => {
            return iso_timestamp(text).is_some_and(|iso| {
                super::values::write_str(out, &iso);
                true
            })
        }
        (_, TimePrecisionMode::Isostring) => return false,
        (Base::TimeTz, _) => {
            return utc_time(text).is_some_and(|t| {
                super::values::write_str(out, &t);
                true
            })
        }
        (Base::Date, _) => match text {
            "infinity" => Some(i64::from(i32::MAX)),
            "-infinity" => Some(i64::from(i32::MIN)),
            _ => days_since_epoch(text),
        },
        (Base::Time, _) => {
            micros_of_day(text).map(|us| in_unit(us, time_in_millis(type_modifier, mode)))
        }
        (Base::Timestamp, _) => match text {
            "infinity" => Some(TIMESTAMP_INFINITY),
            "-infinity" => Some(TIMESTAMP_MINUS_INFINITY),
            _ => timestamp_micros(text)
                .map(|us| in_unit(us, timestamp_in_millis(type_modifier, mode))),
        },
        _ => None,
    };
    match number {
        Some(n) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{n}");
            true
        }
        None => false,
    }
}

fn in_unit(micros: i64, millis: bool) -> i64 {
    if millis {
        micros.div_euclid(1000)
    } else {
        micros
    }
}

/// Whether a `time` column is written in milliseconds (else microseconds).
pub(crate) fn time_in_millis(type_modifier: i32, mode: TimePrecisionMode) -> bool {
    match mode {
        TimePrecisionMode::Connect => true,
        TimePrecisionMode::Adaptive => (0..=3).contains(&type_modifier),
        _ => false,
    }
}

/// Whether a `timestamp` column is written in milliseconds.
pub(crate) fn timestamp_in_millis(type_modifier: i32, mode: TimePrecisionMode) -> bool {
    match mode {
        TimePrecisionMode::Connect => true,
        _ => (0..=3).contains(&type_modifier),
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian civil date
/// (Howard Hinnant's `days_from_civil`); BC years count 1 BC as year 0.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-02-29` or `0044-03-15 BC` -> days since the Unix epoch.
fn days_since_epoch(text: &str) -> Option<i64> {
    let (date, bc) = match text.strip_suffix(" BC") {
        Some(d) => (d, true),
        None => (text, false),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let year = if bc { 1 - year } else { year };
    Some(days_from_civil(year, month, day))
}

/// `13:04:05.123` -> microseconds since midnight (`24:00:00` is a whole day).
fn micros_of_day(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, ':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds = parts.next()?;
    let (secs, frac) = seconds.split_once('.').unwrap_or((seconds, ""));
    let secs: i64 = secs.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_us: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(((hours * 60 + minutes) * 60 + secs) * 1_000_000 + frac_us)
}

/// `2024-02-29 13:04:05.5[ BC]` -> microseconds since the Unix epoch.
fn timestamp_micros(text: &str) -> Option<i64> {
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, " BC"),
        None => (text, ""),
    };
    let (date, time) = body.split_once(' ')?;
    let days = days_since_epoch(&format!("{date}{bc}"))?;
    Some(days * MICROS_PER_DAY + micros_of_day(time)?)
}

/// `13:04:05.5+05:30` -> `07:34:05.5Z`: a `timetz` in UTC, as Debezium's
/// ZonedTime writes it.
fn utc_time(text: &str) -> Option<String> {
    let at = text.rfind(['+', '-'])?;
    let (clock, offset) = text.split_at(at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut fields = offset[1..].split(':').map(str::parse::<i64>);
    let hours = fields.next()?.ok()?;
    let minutes = fields.next().transpose().ok()?.unwrap_or(0);
    let seconds = fields.next().transpose().ok()?.unwrap_or(0);
    let offset_us = sign * ((hours * 60 + minutes) * 60 + seconds) * 1_000_000;
    let local = micros_of_day(clock)?;
    let utc = (local - offset_us).rem_euclid(MICROS_PER_DAY);
    let whole = utc / 1_000_000;
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        whole / 3600,
        whole / 60 % 60,
        whole % 60
    );
    // Keep the fraction's digits as PostgreSQL wrote them.
    if let Some((_, frac)) = clock.split_once('.') {
        let digits = frac.len().min(6);
        let scaled = (utc % 1_000_000) / 10i64.pow(6 - digits as u32);
        s.push_str(&format!(".{scaled:0digits$}"));
    }
    s.push('Z');
    Some(s)
}

/// `2024-01-02 03:04:05.5+00` -> `2024-01-02T03:04:05.5Z`;
/// `2024-01-02 03:04:05` -> `2024-01-02T03:04:05`. `None` for infinity and
/// BC dates, which have no ISO-8601 form and stay as PostgreSQL wrote them.
pub(super) fn iso_timestamp(text: &str) -> Option<String> {
    if text.ends_with(" BC") || !text.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    let (date, time) = text.split_once(' ')?;
    let mut iso = String::with_capacity(text.len() + 4);
    iso.push_str(date);
    iso.push('T');
    // The offset starts at the last '+' or '-' after the seconds.
    match time.rfind(['+', '-']) {
        Some(at) => {
            let (clock, offset) = time.split_at(at);
            iso.push_str(clock);
            match offset {
                "+00" | "-00" | "+00:00" => iso.push('Z'),
                o if o.len() == 3 => {
                    iso.push_str(o);
                    iso.push_str(":00");
                }
                o => iso.push_str(o),
            }
        }
        None => iso.push_str(time),
    }
    Some(iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(base: Base, typmod: i32, text: &str, mode: TimePrecisionMode) -> String {
        let mut out = Vec::new();
        assert!(
            write_temporal(&mut out, base, typmod, text.as_bytes(), mode),
            "{text}"
        );
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        use TimePrecisionMode::Adaptive;
        assert_eq!(render(Base::Date, -1, "1970-01-01", Adaptive), "0");
        assert_eq!(render(Base::Date, -1, "2024-02-29", Adaptive), "19782");
        assert_eq!(render(Base::Date, -1, "1969-12-31", Adaptive), "-1");
        // 1 BC is year 0: 0001-01-01 BC is 366 days before 0001-01-01.
        assert_eq!(render(Base::Date, -1, "0001-01-01", Adaptive), "-719162");
        assert_eq!(render(Base::Date, -1, "0001-01-01 BC", Adaptive), "-719528");
        assert_eq!(render(Base::Date, -1, "infinity", Adaptive), "2147483647");
    }

    #[test]
    fn times_follow_the_column_precision() {
        use TimePrecisionMode::*;
        assert_eq!(render(Base::Time, 3, "13:04:05.123", Adaptive), "47045123");
        assert_eq!(
            render(Base::Time, -1, "13:04:05.123456", Adaptive),
            "47045123456"
        );
        assert_eq!(render(Base::Time, -1, "24:00:00", Adaptive), "86400000000");
        assert_eq!(
            render(Base::Time, 3, "00:00:01", AdaptiveTimeMicroseconds),
            "1000000"
        );
        assert_eq!(render(Base::Time, -1, "00:00:01.999999", Connect), "1999");
        assert_eq!(
            render(Base::TimeTz, -1, "13:04:05.5+05:30", Adaptive),
            "\"07:34:05.5Z\""
        );
        assert_eq!(
            render(Base::TimeTz, -1, "01:00:00-02", Connect),
            "\"03:00:00Z\""
        );
        assert_eq!(
            render(Base::TimeTz, -1, "01:00:00+02", Connect),
            "\"23:00:00Z\""
        );
    }

    #[test]
    fn timestamps_count_from_the_epoch() {
        use TimePrecisionMode::*;
        let ts = "2024-02-29 13:04:05.123456";
        assert_eq!(
            render(Base::Timestamp, -1, ts, Adaptive),
            "1709211845123456"
        );
        assert_eq!(
            render(Base::Timestamp, 3, "2024-02-29 13:04:05.123", Adaptive),
            "1709211845123"
        );
        assert_eq!(render(Base::Timestamp, -1, ts, Connect), "1709211845123");
        assert_eq!(
            render(Base::Timestamp, -1, "1969-12-31 23:59:59.5", Connect),
            "-500"
        );
        assert_eq!(
            render(Base::Timestamp, -1, "infinity", Adaptive),
            "9223372036825200000"
        );
        assert_eq!(
            render(Base::TimestampTz, -1, "2024-02-29 13:04:05+00", Adaptive),
            "\"2024-02-29T13:04:05Z\""
        );
        assert_eq!(
            render(Base::Timestamp, -1, ts, Isostring),
            "\"2024-02-29T13:04:05.123456\""
        );
        let mut out = Vec::new();
        assert!(!write_temporal(
            &mut out,
            Base::Date,
            -1,
            b"2024-02-29",
            Isostring
        ));
    }
}
