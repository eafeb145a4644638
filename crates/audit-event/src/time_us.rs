//! Timestamps as stored: whole microseconds since the Unix epoch, UTC.
//!
//! Integers rather than database time types so both backends store, compare
//! and hash exactly the same value.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Microseconds since the epoch, now.
pub fn now() -> i64 {
    from_datetime(OffsetDateTime::now_utc())
}

/// Microseconds since the epoch for `t` (sub-microsecond digits are dropped).
pub fn from_datetime(t: OffsetDateTime) -> i64 {
    // i64 microseconds cover ±292,000 years; OffsetDateTime's range is smaller.
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The instant `us` microseconds after the epoch, or `None` if out of range.
pub fn to_datetime(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

/// RFC 3339 text for `us`, always with six fractional digits so that
/// columns line up, e.g. `2026-11-21T15:02:29.120000Z`.
pub fn format(us: i64) -> String {
    let layout = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    to_datetime(us)
        .and_then(|t| t.format(&layout).ok())
        .unwrap_or_else(|| format!("@{us}us"))
}

/// Parses RFC 3339 (`2026-11-21T15:00:00Z`) or a bare date (`2026-11-21`, UTC midnight).
pub fn parse(text: &str) -> Result<i64, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(from_datetime(t));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &date_format)
        .map(|d| from_datetime(d.midnight().assume_utc()))
        .map_err(|_| {
            format!("{text:?} is not a time: use RFC 3339 (2026-11-21T15:00:00Z) or a date (2026-11-21)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let us = parse("2026-11-21T15:02:29.123456Z").unwrap();
        assert_eq!(format(us), "2026-11-21T15:02:29.123456Z");
    }

    #[test]
    fn formatted_times_have_a_fixed_width() {
        assert_eq!(format(1_500_000), "1970-01-01T00:00:01.500000Z");
        assert_eq!(format(0).len(), format(123_456).len());
    }

    #[test]
    fn bare_date_is_utc_midnight() {
        assert_eq!(parse("1970-01-02").unwrap(), 86_400_000_000);
    }

    #[test]
    fn offsets_are_honoured() {
        assert_eq!(
            parse("2026-01-01T01:00:00+01:00").unwrap(),
            parse("2026-01-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn garbage_is_refused_with_the_input_named() {
        let err = parse("yesterday").unwrap_err();
        assert!(err.contains("\"yesterday\""), "{err}");
    }
}
