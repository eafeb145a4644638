//! The time zone a person reads a report in (`--tz`): tables and HTML show
//! times and group days in it; CSV and JSON lines are always UTC.

use audit_db::time_us;
use jiff::tz::{Offset, TimeZone};

/// A time zone: UTC, an IANA name (`Europe/Berlin`, with its daylight
/// saving rules) or a fixed offset (`+05:30`).
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

/// A `--tz` value that names no time zone.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone {0:?}: give an IANA name such as Europe/Berlin, UTC, or an offset such as +05:30")]
pub struct UnknownZone(pub String);

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

impl Zone {
    /// UTC, the zone of every machine format.
    pub fn utc() -> Self {
        Zone {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// Parses `UTC`, an IANA name or `±HH:MM`.
    pub fn parse(text: &str) -> Result<Self, UnknownZone> {
        let unknown = || UnknownZone(text.to_owned());
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Ok(Zone::utc());
        }
        let tz = if let Some(rest) = text.strip_prefix(['+', '-']) {
            let (h, m) = rest.split_once(':').ok_or_else(unknown)?;
            let (h, m): (i32, i32) = match (h.len(), m.len()) {
                (2, 2) => (
                    h.parse().map_err(|_| unknown())?,
                    m.parse().map_err(|_| unknown())?,
                ),
                _ => return Err(unknown()),
            };
            if h > 23 || m > 59 {
                return Err(unknown());
            }
            let sign = if text.starts_with('-') { -1 } else { 1 };
            TimeZone::fixed(
                Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|_| unknown())?,
            )
        } else {
            TimeZone::get(text).map_err(|_| unknown())?
        };
        Ok(Zone {
            name: text.to_owned(),
            tz,
        })
    }

    /// The name it was given by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is UTC.
    pub fn is_utc(&self) -> bool {
        self.tz == TimeZone::UTC
    }

    /// `us` as RFC 3339 with this zone's offset at that instant, six
    /// fractional digits (`2026-11-21T16:02:29.120000+01:00`); UTC ends in `Z`.
    pub fn format(&self, us: i64) -> String {
        match self.civil(us) {
            Some((civil, _)) if self.is_utc() => format!("{}Z", civil),
            Some((civil, offset)) => {
                let secs = offset.seconds();
                let sign = if secs < 0 { '-' } else { '+' };
                let secs = secs.unsigned_abs();
                format!("{civil}{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
            }
            None => time_us::format(us),
        }
    }

    /// The calendar day of `us` in this zone, `YYYY-MM-DD`.
    pub fn day(&self, us: i64) -> String {
        match self.civil(us) {
            Some((civil, _)) => civil[..10].to_owned(),
            None => time_us::format(us),
        }
    }

    /// The wall-clock time `YYYY-MM-DDTHH:MM:SS.ffffff` and offset at `us`.
    fn civil(&self, us: i64) -> Option<(String, Offset)> {
        let at = jiff::Timestamp::from_microsecond(us).ok()?;
        let zoned = at.to_zoned_datetime(self.tz.clone());
        let t = zoned.datetime();
        if !(0..=9999).contains(&t.year()) {
            return None;
        }
        let civil = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.subsec_nanosecond() / 1_000
        );
        Some((civil, zoned.offset()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(text: &str) -> i64 {
        time_us::parse(text).unwrap()
    }

    #[test]
    fn utc_reads_as_the_machine_formats_do() {
        let t = us("2026-11-21T15:02:29.120000Z");
        assert_eq!(Zone::utc().format(t), time_us::format(t));
        assert_eq!(Zone::parse("utc").unwrap().format(t), time_us::format(t));
    }

    #[test]
    fn an_iana_zone_follows_daylight_saving() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(
            berlin.format(us("2026-01-15T12:00:00Z")),
            "2026-01-15T13:00:00.000000+01:00"
        );
        assert_eq!(
            berlin.format(us("2026-07-15T12:00:00Z")),
            "2026-07-15T14:00:00.000000+02:00"
        );
    }

    #[test]
    fn days_are_the_zones_calendar_days() {
        let t = us("2026-11-21T23:30:00Z");
        assert_eq!(Zone::utc().day(t), "2026-11-21");
        assert_eq!(Zone::parse("Asia/Tokyo").unwrap().day(t), "2026-11-22");
        assert_eq!(Zone::parse("-05:00").unwrap().day(t), "2026-11-21");
    }

    #[test]
    fn fixed_offsets_are_written_back() {
        let kolkata = Zone::parse("+05:30").unwrap();
        assert_eq!(
            kolkata.format(us("2026-11-21T00:00:00Z")),
            "2026-11-21T05:30:00.000000+05:30"
        );
        assert_eq!(
            Zone::parse("-03:00")
                .unwrap()
                .format(us("2026-11-21T00:00:00Z")),
            "2026-11-20T21:00:00.000000-03:00"
        );
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        for bad in ["Mars/Olympus", "+5", "+25:00", "+05:60", "", "Europe/"] {
            let err = Zone::parse(bad).unwrap_err();
            assert_eq!(err.0, bad);
        }
    }
}
