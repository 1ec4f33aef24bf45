//! RFC 3339 timestamps and dates ↔ nanoseconds since the Unix epoch, in UTC.
//!
//! The civil-date arithmetic is the record's own (`nevermore_schemas::time`): the proleptic
//! Gregorian calendar counted in days from 1970-01-01; years are limited to 0000..=9999 so every
//! value prints in the 4-digit form.

use nevermore_schemas::time::{civil_from_days, days_from_civil, days_in_month};

const NS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Parses `2026-11-26`, `2026-11-26T10:00:00Z`, `2026-11-26T10:00:00.5+02:00`, ... into
/// nanoseconds since the epoch (UTC). A date alone means its 00:00:00Z.
pub fn parse_timestamp(text: &str) -> Option<i128> {
    parse(text).ok()
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nine fraction digits
/// (`2026-11-26T10:00:00.000000000Z`): the normal form of `time:` values in the AST.
/// `None` outside years 0000..=9999.
pub fn format_timestamp(ns: i128) -> Option<String> {
    let secs = ns.div_euclid(NS_PER_SEC);
    let frac = ns.rem_euclid(NS_PER_SEC);
    let days = i64::try_from(secs.div_euclid(i128::from(SECS_PER_DAY))).ok()?;
    let rem = i64::try_from(secs.rem_euclid(i128::from(SECS_PER_DAY))).ok()?;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// The normal form of a `time:` value, or why it is not a timestamp.
pub(crate) fn normalize(text: &str) -> Result<String, &'static str> {
    format_timestamp(parse(text)?).ok_or("out of the years 0000 to 9999")
}

/// The shortest text that parses back to the normalised `value`: the date alone at midnight,
/// no fraction when it is zero, trailing zeros of the fraction dropped. Other text unchanged.
pub(crate) fn shorten(value: &str) -> String {
    let b = value.as_bytes();
    let normal = b.len() == 30 && b[10] == b'T' && b[19] == b'.' && b[29] == b'Z';
    if !normal || !value.is_ascii() {
        return value.to_owned();
    }
    if &value[10..] == "T00:00:00.000000000Z" {
        return value[..10].to_owned();
    }
    let frac = value[20..29].trim_end_matches('0');
    if frac.is_empty() {
        format!("{}Z", &value[..19])
    } else {
        format!("{}.{frac}Z", &value[..19])
    }
}

const SHAPE: &str =
    "expected an RFC 3339 timestamp like 2026-11-26T10:00:00Z or a date like 2026-11-26";

fn parse(text: &str) -> Result<i128, &'static str> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, &'static str> {
        let digits = b.get(from..from + len).ok_or(SHAPE)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(SHAPE);
        }
        Ok(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, c: u8| -> Result<(), &'static str> {
        if b.get(at) == Some(&c) {
            Ok(())
        } else {
            Err(SHAPE)
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b'-')?;
    sep(7, b'-')?;
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err("day out of range");
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Ok(i128::from(days * SECS_PER_DAY) * NS_PER_SEC);
    }
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return Err(SHAPE);
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b':')?;
    sep(16, b':')?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range");
    }
    let mut at = 19;
    let mut frac: i128 = 0;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(SHAPE);
        }
        if digits > 9 {
            return Err("more than 9 fraction digits");
        }
        let n = num(at + 1, digits)?;
        frac = i128::from(n) * 10i128.pow(9 - digits as u32);
        at += 1 + digits;
    }
    let offset = match b.get(at) {
        Some(b'Z' | b'z') if b.len() == at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 => {
            sep(at + 3, b':')?;
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            let secs = oh * 3600 + om * 60;
            if sign == b'+' { secs } else { -secs }
        }
        _ => return Err("expected Z or an offset like +02:00 after the time"),
    };
    let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
    Ok(i128::from(secs) * NS_PER_SEC + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_offsets_normalise_to_utc() {
        assert_eq!(
            normalize("1970-01-01"),
            Ok("1970-01-01T00:00:00.000000000Z".into())
        );
        assert_eq!(
            normalize("2026-11-26T10:00:00.5+02:00"),
            Ok("2026-11-26T08:00:00.500000000Z".into())
        );
        assert_eq!(
            normalize("2000-03-01t00:00:00-00:30"),
            Ok("2000-03-01T00:30:00.000000000Z".into())
        );
        assert_eq!(
            normalize("2024-02-29T23:59:59.123456789Z"),
            Ok("2024-02-29T23:59:59.123456789Z".into())
        );
        assert_eq!(normalize("2023-02-29"), Err("day out of range"));
        assert_eq!(
            normalize("0000-01-01T00:00:00+00:01").map(|_| ()),
            Err("out of the years 0000 to 9999")
        );
        assert!(normalize("2026-11-26T10:00Z").is_err());
        assert!(normalize("2026-11-26T10:00:00").is_err());
        assert!(normalize("2026-11-26T10:00:00.Z").is_err());
        assert!(normalize("２026-11-26").is_err());
    }

    #[test]
    fn civil_round_trip_over_the_whole_range() {
        for days in (days_from_civil(0, 1, 1)..=days_from_civil(9999, 12, 31)).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert!(d >= 1 && d <= days_in_month(y, m), "{y}-{m}-{d}");
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 11, 26), 20_783);
    }

    #[test]
    fn shorten_drops_zeros() {
        assert_eq!(shorten("2026-11-26T00:00:00.000000000Z"), "2026-11-26");
        assert_eq!(
            shorten("2026-11-26T10:00:00.000000000Z"),
            "2026-11-26T10:00:00Z"
        );
        assert_eq!(
            shorten("2026-11-26T10:00:00.120000000Z"),
            "2026-11-26T10:00:00.12Z"
        );
        assert_eq!(shorten("soon"), "soon");
    }
}
