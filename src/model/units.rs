//! Units: StackMemory's mixed time units (seconds or ms), ISO-8601 times, durations and sizes.

/// A time value above this is milliseconds, below it seconds (1e11 s is the year 5138).
pub const MS_THRESHOLD: i64 = 100_000_000_000;

/// Interpret a StackMemory time value (seconds or ms) as seconds.
pub fn to_seconds(t: i64) -> i64 {
    if t > MS_THRESHOLD {
        t / 1000
    } else {
        t
    }
}

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Parse `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]` into Unix milliseconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits(s.get(r)?);
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut ms, mut off) = (0i64, 0i64, 0i64, 0i64, 0i64);
    let mut rest = &s[10..];
    if !rest.is_empty() {
        let first = rest.as_bytes()[0];
        if first != b'T' && first != b't' && first != b' ' {
            return None;
        }
        rest = &rest[1..];
        let rb = rest.as_bytes();
        if rb.len() < 5 || rb[2] != b':' {
            return None;
        }
        h = digits(rest.get(0..2)?)?;
        mi = digits(rest.get(3..5)?)?;
        rest = &rest[5..];
        if rest.starts_with(':') {
            sec = digits(rest.get(1..3)?)?;
            rest = &rest[3..];
            if rest.starts_with('.') {
                let digits: String = rest[1..].chars().take_while(|c| c.is_ascii_digit()).collect();
                if digits.is_empty() {
                    return None;
                }
                let mut frac = digits.clone();
                frac.truncate(3);
                while frac.len() < 3 {
                    frac.push('0');
                }
                ms = frac.parse().ok()?;
                rest = &rest[1 + digits.len()..];
            }
        }
        match rest {
            "" | "Z" | "z" => {}
            _ => {
                let sign = match rest.as_bytes()[0] {
                    b'+' => 1,
                    b'-' => -1,
                    _ => return None,
                };
                let oh = digits(rest.get(1..3)?)?;
                let om: i64 = match rest.len() {
                    3 => 0,
                    6 if rest.as_bytes()[3] == b':' => digits(rest.get(4..6)?)?,
                    5 => digits(rest.get(3..5)?)?,
                    _ => return None,
                };
                off = sign * (oh * 3600 + om * 60);
            }
        }
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - off;
    if secs < 0 {
        return None;
    }
    Some(secs * 1000 + ms)
}

/// A field of ASCII digits only: `str::parse` alone also takes a sign, so `T-1:00` was hour -1.
fn digits(t: &str) -> Option<i64> {
    if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

pub const MB: u64 = 1024 * 1024;
pub const GB: u64 = 1024 * MB;

/// `"12.5 kb"` → `(12.5, "kb")`: the number and its unit, lowercased.
fn number_and_unit(s: &str) -> Option<(f64, String)> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim().to_ascii_lowercase()))
}

/// A whole number from `n * mult`, if it is one a u64 can hold.
fn scaled(n: f64, mult: f64) -> Option<u64> {
    let v = n * mult;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// `"500MB"`, `"1GB"`, `"64 KiB"`, `"1024"`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(s)?;
    let mult = match unit.as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MB,
        "g" | "gb" | "gib" => GB,
        "t" | "tb" | "tib" => 1024 * GB,
        _ => return None,
    };
    scaled(n, mult as f64)
}

/// `"24h"`, `"7d"`, `"30m"`, `"45s"`, `"250ms"`, `"1w"`; a bare number is milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(s)?;
    let mult = match unit.as_str() {
        "" | "ms" => 1.0,
        "s" | "sec" => 1000.0,
        "m" | "min" => 60_000.0,
        "h" | "hr" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        "w" => 7.0 * 86_400_000.0,
        _ => return None,
    };
    scaled(n, mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_millis() {
        assert_eq!(to_seconds(1767960000), 1767960000);
        assert_eq!(to_seconds(1767960000123), 1767960000);
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2026-01-09T13:00:00+01:00"), Some(1767960000000));
        assert_eq!(parse_iso8601("not a date"), None);
    }

    /// Found while writing the normaliser's properties (`normalize_props.rs` keeps one): the time
    /// fields were read with `str::parse`, which takes a sign, so these were accepted as times
    /// (`T-1:00` as an hour before midnight).
    #[test]
    fn a_sign_inside_a_time_field_is_refused() {
        for s in [
            "2026-01-09T-1:00Z",
            "2026-01-09T+1:00",
            "2026-01-09T10:-5Z",
            "2026-01-09T10:00:+5Z",
            "2026-01-09T10:00:00+-1:00",
            "2026-01-09T10:00:00-01:+5",
            "2026-01-09T10:00:00++100",
        ] {
            assert_eq!(parse_iso8601(s), None, "{s}");
        }
        assert_eq!(parse_iso8601("2026-01-09T10:00:00-0100"), Some(1767956400000));
    }
}
