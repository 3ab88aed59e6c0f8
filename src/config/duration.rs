//! Parsing of the config's duration strings ("500ms", "10s", "2m", "1h"):
//! a whole number followed by a mandatory unit, greater than zero and at
//! most [`MAX_DURATION`].

use std::time::Duration;

/// Upper bound for every timeout: anything longer is almost certainly a
/// unit mistake ("15h" for "15s"), and a bound keeps deadline arithmetic
/// far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `text`; on failure returns the reason (the caller adds the key,
/// the value and the position).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.bytes().take_while(|b| b.is_ascii_digit()).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err("expected a whole number followed by a unit (ms, s, m or h)".to_owned());
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err("missing unit (ms, s, m or h)".to_owned()),
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    let too_long = || "longer than the maximum of 24h".to_owned();
    // Digits only, so the parse can fail only by overflowing u64.
    let count: u64 = number.parse().map_err(|_| too_long())?;
    let millis = count.checked_mul(millis_per_unit).ok_or_else(too_long)?;
    let duration = Duration::from_millis(millis);
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("1440m"), Ok(MAX_DURATION));
    }

    #[test]
    fn invalid() {
        for (text, needle) in [
            ("10", "missing unit"),
            ("5x", "unknown unit \"x\""),
            ("5 s", "unknown unit \" s\""),
            ("5S", "unknown unit \"S\""),
            ("0s", "greater than zero"),
            ("0ms", "greater than zero"),
            ("", "expected a whole number"),
            ("s", "expected a whole number"),
            ("-1s", "expected a whole number"),
            ("1.5s", "unknown unit \".5s\""),
            ("25h", "maximum of 24h"),
            ("86400001ms", "maximum of 24h"),
            ("99999999999999999999999s", "maximum of 24h"),
            ("18446744073709551615h", "maximum of 24h"),
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
