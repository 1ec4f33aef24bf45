//! RFC 3339 timestamps as `i64` nanoseconds since the Unix epoch (UTC).

const NS_PER_SEC: i64 = 1_000_000_000;

/// Parses `YYYY-MM-DDTHH:MM:SS[.f{1,}](Z|±hh:mm)` into nanoseconds since the Unix epoch.
///
/// Accepts `T`, `t` or a space as date/time separator and `Z` or `z`. Fraction digits past the
/// ninth are ignored. Returns `None` for anything else, including instants outside the `i64`
/// nanosecond range (years 1677..2262).
pub fn parse_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let hour = digits(b, 11, 2)?;
    let min = digits(b, 14, 2)?;
    let sec = digits(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b[i] == b'.' {
        i += 1;
        let first = i;
        let mut n = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if n < 9 {
                frac = frac * 10 + i64::from(b[i] - b'0');
                n += 1;
            }
            i += 1;
        }
        if i == first {
            return None;
        }
        while n < 9 {
            frac *= 10;
            n += 1;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2)?;
            let om = digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let s = oh * 3600 + om * 60;
            if *sign == b'-' { -s } else { s }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    // i128: the most negative instants overflow i64 before the fraction is added
    i64::try_from(i128::from(secs) * i128::from(NS_PER_SEC) + i128::from(frac)).ok()
}

/// Appends `ns` as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always 9 fraction digits, UTC).
pub fn format_rfc3339(ns: i64, out: &mut String) {
    let buf = rfc3339_bytes(ns);
    // All bytes are ASCII digits and separators.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// The 30 ASCII bytes of `format_rfc3339`, for encoders that write bytes.
pub fn rfc3339_bytes(ns: i64) -> [u8; 30] {
    let mut buf = [0u8; 30];
    write_seconds(ns.div_euclid(NS_PER_SEC), &mut buf);
    put(&mut buf[20..29], ns.rem_euclid(NS_PER_SEC));
    buf[29] = b'Z';
    buf
}

/// Writes `YYYY-MM-DDTHH:MM:SS.` for whole seconds since the epoch into `buf[..20]`.
pub fn write_seconds(secs: i64, buf: &mut [u8; 30]) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // i64 nanoseconds span years 1677..2262, so the year always has 4 digits
    put(&mut buf[0..4], y);
    buf[4] = b'-';
    put(&mut buf[5..7], m);
    buf[7] = b'-';
    put(&mut buf[8..10], d);
    buf[10] = b'T';
    put(&mut buf[11..13], sod / 3600);
    buf[13] = b':';
    put(&mut buf[14..16], sod / 60 % 60);
    buf[16] = b':';
    put(&mut buf[17..19], sod % 60);
    buf[19] = b'.';
}

/// Puts `v` (non-negative) as `dst.len()` zero-padded decimal digits.
pub fn put_digits(dst: &mut [u8], v: i64) {
    put(dst, v);
}

fn put(dst: &mut [u8], mut v: i64) {
    for c in dst.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Gregorian leap year.
pub fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days of month `m` (1–12) of year `y`.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days, proleptic Gregorian.
/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn fmt(ns: i64) -> String {
        let mut s = String::new();
        format_rfc3339(ns, &mut s);
        s
    }

    #[test]
    fn parses_common_form() {
        let ns = parse_rfc3339(b"2026-11-26T10:00:00.123456789Z").unwrap();
        assert_eq!(fmt(ns), "2026-11-26T10:00:00.123456789Z");
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339(b"1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
    }

    #[test]
    fn offsets_are_the_same_instant() {
        let a = parse_rfc3339(b"2026-11-26T12:00:00.5+02:00").unwrap();
        let b = parse_rfc3339(b"2026-11-26T10:00:00.5Z").unwrap();
        assert_eq!(a, b);
        let c = parse_rfc3339(b"2026-11-26T05:30:00.5-04:30").unwrap();
        assert_eq!(c, b);
        assert_eq!(fmt(a), "2026-11-26T10:00:00.500000000Z");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"2026-11-26T10:00:00",
            b"2026-11-26T10:00:00.Z",
            b"2026-13-26T10:00:00Z",
            b"2026-02-30T10:00:00Z",
            b"2026-11-26T24:00:00Z",
            b"2026-11-26T10:00:00Zx",
            b"2026-11-26T10:00:00+0200",
            b"2026-11-26X10:00:00Z",
            b"+026-11-26T10:00:00Z",
            b"9999-12-31T23:59:59Z", // outside the i64 nanosecond range
            b"\xff\xfe-11-26T10:00:00Z",
        ] {
            assert_eq!(
                parse_rfc3339(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn leap_day_and_extra_fraction_digits() {
        let a = parse_rfc3339(b"2024-02-29T00:00:00.1234567891234Z").unwrap();
        assert_eq!(fmt(a), "2024-02-29T00:00:00.123456789Z");
    }

    #[test]
    fn negative_and_extreme_instants() {
        assert_eq!(fmt(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(fmt(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(fmt(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(parse_rfc3339(fmt(i64::MIN).as_bytes()), Some(i64::MIN));
    }

    proptest! {
        #[test]
        fn round_trip(ns in 0i64..=i64::MAX) {
            let s = fmt(ns);
            prop_assert_eq!(parse_rfc3339(s.as_bytes()), Some(ns));
        }

        #[test]
        fn round_trip_before_epoch(ns in i64::MIN..0i64) {
            prop_assert_eq!(parse_rfc3339(fmt(ns).as_bytes()), Some(ns));
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_rfc3339(&b);
        }
    }
}
