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
    match TimeText::new(us) {
        Some(text) => text.as_str().to_owned(),
        None => format!("@{us}us"),
    }
}

/// The text [`format`] gives, on the stack: listings write two or three
/// times per event, and building them digit by digit is several times
/// faster than a general formatter and needs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TimeText([u8; 27]);

impl TimeText {
    /// The text for `us`; `None` outside the years 0 to 9999, which RFC
    /// 3339 cannot write.
    pub fn new(us: i64) -> Option<Self> {
        let t = to_datetime(us)?;
        let (year, month, day) = t.to_calendar_date();
        let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        for (at, width, value) in [
            (0, 4, year),
            (5, 2, u32::from(u8::from(month))),
            (8, 2, u32::from(day)),
            (11, 2, u32::from(t.hour())),
            (14, 2, u32::from(t.minute())),
            (17, 2, u32::from(t.second())),
            (20, 6, t.microsecond()),
        ] {
            let mut value = value;
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        Some(TimeText(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for TimeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for TimeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimeText({self})")
    }
}

impl serde::Serialize for TimeText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
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
    fn digits_match_the_general_formatter() {
        let layout = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        // Epoch, leap day, end of a year, the last microsecond of 9999, and
        // a spread of instants in between.
        let mut samples = vec![
            0,
            951_782_400_000_000,
            1_767_225_599_999_999,
            253_402_300_799_999_999,
        ];
        samples.extend((0..1_000i64).map(|i| i * 7_919_333_333_337 + 123_456));
        for us in samples {
            let general = to_datetime(us).unwrap().format(&layout).unwrap();
            assert_eq!(format(us), general, "at {us}");
        }
    }

    #[test]
    fn years_rfc3339_cannot_write_fall_back_to_the_number() {
        assert_eq!(format(-62_167_219_200_000_001), "@-62167219200000001us");
        assert_eq!(format(253_402_300_800_000_000), "@253402300800000000us");
        assert_eq!(format(i64::MAX), format!("@{}us", i64::MAX));
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
