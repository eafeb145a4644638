//! The retention policy: for each record class an online period and an
//! archive period, with a default and overrides per technician group,
//! stored as one setting in the audit database.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use audit_db::Accounts;

/// The setting the policy is stored under.
pub const SETTING: &str = "retention_policy";

/// The kinds of records retention governs. Every deletion path asks
/// [`crate::hold::Holds::covering`] about every record of every class;
/// `ALL` lets the tests enumerate them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordClass {
    /// Events of a support session, chat included.
    SessionEvents,
    /// `.vrec` session recordings.
    Recordings,
    /// Logins, lockouts, administrative changes and the log's own events.
    SecurityEvents,
    /// The outcome of every webhook post (`webhook.delivery` events).
    WebhookDeliveries,
}

impl RecordClass {
    /// Every class, in the order policies list them.
    pub const ALL: [RecordClass; 4] = [
        RecordClass::SessionEvents,
        RecordClass::Recordings,
        RecordClass::SecurityEvents,
        RecordClass::WebhookDeliveries,
    ];

    /// Its name in policies, manifests and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordClass::SessionEvents => "session_events",
            RecordClass::Recordings => "recordings",
            RecordClass::SecurityEvents => "security_events",
            RecordClass::WebhookDeliveries => "webhook_deliveries",
        }
    }

    /// The shortest time (online and archived together) a policy may keep
    /// this class: security events are kept at least a year.
    pub fn minimum(self) -> Period {
        match self {
            RecordClass::SecurityEvents => Period::years(1),
            _ => Period::ZERO,
        }
    }

    /// The class of an audit event of type `kind`, in a session or not.
    pub fn of_event(kind: &str, in_session: bool) -> RecordClass {
        if kind == "webhook.delivery" {
            RecordClass::WebhookDeliveries
        } else if in_session {
            RecordClass::SessionEvents
        } else {
            RecordClass::SecurityEvents
        }
    }
}

impl fmt::Display for RecordClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordClass {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.replace('-', "_");
        RecordClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| PolicyError::UnknownClass(s.clone()))
    }
}

/// A span of calendar time: years, months and days, added to a date as
/// the calendar does (a year from 29 February is 28 February).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Period {
    months: u32,
    days: u32,
}

impl Period {
    /// No time at all.
    pub const ZERO: Period = Period { months: 0, days: 0 };

    /// `n` years.
    pub const fn years(n: u32) -> Period {
        Period {
            months: n * 12,
            days: 0,
        }
    }

    /// The two together.
    pub fn plus(self, other: Period) -> Period {
        Period {
            months: self.months + other.months,
            days: self.days + other.days,
        }
    }

    /// Whether it is no time at all.
    pub fn is_zero(self) -> bool {
        self == Period::ZERO
    }

    /// Roughly how long it is, in days (for comparing with a minimum).
    fn approx_days(self) -> u64 {
        u64::from(self.months) * 365 / 12 + u64::from(self.days)
    }

    /// `at_us` (microseconds since the epoch, UTC) moved forward by this
    /// period; saturates far in the future.
    pub fn after(self, at_us: i64) -> i64 {
        self.shift(at_us, 1)
    }

    /// `at_us` moved back by this period; saturates far in the past.
    pub fn before(self, at_us: i64) -> i64 {
        self.shift(at_us, -1)
    }

    fn shift(self, at_us: i64, sign: i64) -> i64 {
        let far = if sign > 0 { i64::MAX } else { i64::MIN };
        let Some(t) = audit_db::time_us::to_datetime(at_us) else {
            return far;
        };
        let date = t.date();
        let months = i64::from(date.month() as u8 - 1) + sign * i64::from(self.months);
        let year = i64::from(date.year()) + months.div_euclid(12);
        let month = (months.rem_euclid(12) + 1) as u8;
        let Some(month) = time::Month::try_from(month)
            .ok()
            .filter(|_| (1..=9999).contains(&year))
        else {
            return far;
        };
        let year = year as i32;
        let day = date.day().min(time::util::days_in_month(month, year));
        let Ok(moved) = time::Date::from_calendar_date(year, month, day) else {
            return far;
        };
        let moved = moved.saturating_add(time::Duration::days(sign * i64::from(self.days)));
        audit_db::time_us::from_datetime(t.replace_date(moved))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m) = (self.months / 12, self.months % 12);
        let mut parts = Vec::new();
        if y > 0 {
            parts.push(format!("{y}y"));
        }
        if m > 0 {
            parts.push(format!("{m}m"));
        }
        if self.days > 0 || parts.is_empty() {
            parts.push(format!("{}d", self.days));
        }
        f.write_str(&parts.join(""))
    }
}

impl FromStr for Period {
    type Err = PolicyError;
    /// `2y`, `18m`, `90d`, `1y6m`, or `0`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| PolicyError::BadPeriod {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let t = text.trim();
        if t.starts_with('-') {
            return Err(bad("a period cannot be negative"));
        }
        if t == "0" {
            return Ok(Period::ZERO);
        }
        let mut period = Period::ZERO;
        let mut number = String::new();
        let mut any = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().map_err(|_| {
                bad("expected a number before each unit, as in 2y, 18m, 90d or 1y6m")
            })?;
            number.clear();
            let n = match c {
                'y' => n.checked_mul(12).map(|m| (m, 0)),
                'm' => Some((n, 0)),
                'd' => Some((0, n)),
                _ => return Err(bad("units are y (years), m (months) and d (days)")),
            }
            .filter(|&(m, d)| m <= 1200 && d <= 36_500)
            .ok_or_else(|| bad("longer than a hundred years"))?;
            period.months += n.0;
            period.days += n.1;
            any = true;
        }
        if !number.is_empty() || !any {
            return Err(bad(
                "expected a unit after each number, as in 2y, 18m, 90d or 1y6m",
            ));
        }
        if period.months > 1200 || period.days > 36_500 {
            return Err(bad("longer than a hundred years"));
        }
        Ok(period)
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Decides, for many start times, whether periods counted from them have
/// run out at one moment: what `period.after(start) <= as_of` says, with
/// the calendar arithmetic done only for starts near the edge (a run asks
/// it of every event).
#[derive(Clone, Debug)]
pub struct Deadlines {
    as_of_us: i64,
    /// Each period the policy has, with `period.before(as_of)`.
    edges: Vec<(Period, i64)>,
}

/// How far from `period.before(as_of)` a start can be and still have a
/// different answer than its side says. Moving by whole months clamps to
/// a month's last day and months differ by up to three days; a month of
/// slack is far more than both together.
const EDGE_SLACK_US: i64 = 31 * 86_400 * 1_000_000;

/// 0001-01-01T00:00:00Z, the earliest start [`Period::after`] moves (it
/// saturates before).
const YEAR_ONE_US: i64 = -62_135_596_800_000_000;

impl Deadlines {
    /// For the periods of `policy`, at `as_of_us`.
    pub fn new(policy: &Policy, as_of_us: i64) -> Self {
        let mut edges: Vec<(Period, i64)> = Vec::new();
        for periods in policy.all() {
            for period in [periods.online, periods.total()] {
                if !edges.iter().any(|(p, _)| *p == period) {
                    edges.push((period, period.before(as_of_us)));
                }
            }
        }
        Deadlines { as_of_us, edges }
    }

    /// Whether `period` counted from `start_us` has run out.
    pub fn passed(&self, period: Period, start_us: i64) -> bool {
        if let Some(&(_, edge)) = self.edges.iter().find(|(p, _)| *p == period) {
            // `after` never moves a time backwards, and moves nearer times
            // to nearer times: far from the edge, the side decides.
            if start_us >= YEAR_ONE_US && start_us < edge.saturating_sub(EDGE_SLACK_US) {
                return true;
            }
            if start_us > edge.saturating_add(EDGE_SLACK_US) {
                return false;
            }
        }
        period.after(start_us) <= self.as_of_us
    }
}

/// How long one class is kept: online, then in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Periods {
    /// In the live database (recordings: where the console wrote them).
    pub online: Period,
    /// In the archive directory, after that.
    pub archive: Period,
}

impl Periods {
    /// Both together: how long after its start a record is deleted.
    pub fn total(self) -> Period {
        self.online.plus(self.archive)
    }
}

impl fmt::Display for Periods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} online + {} archived", self.online, self.archive)
    }
}

impl FromStr for Periods {
    type Err = PolicyError;
    /// `ONLINE+ARCHIVED`, e.g. `2y+2y`, `6y+0`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((online, archive)) = text.split_once('+') else {
            return Err(PolicyError::BadPeriod {
                text: text.to_owned(),
                why: "not ONLINE+ARCHIVED, as in 2y+2y or 6y+0".to_owned(),
            });
        };
        Ok(Periods {
            online: online.parse()?,
            archive: archive.parse()?,
        })
    }
}

/// Periods for every class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassPolicy(pub BTreeMap<RecordClass, Periods>);

impl ClassPolicy {
    /// The same periods for every class.
    pub fn uniform(periods: Periods) -> Self {
        ClassPolicy(RecordClass::ALL.iter().map(|&c| (c, periods)).collect())
    }

    /// A named preset: `default` (2 years online, 2 archived) or `hipaa`
    /// (6 years online, none archived).
    pub fn preset(name: &str) -> Result<Self, PolicyError> {
        let (online, archive) = match name {
            "default" => (2, 2),
            "hipaa" => (6, 0),
            other => return Err(PolicyError::UnknownPreset(other.to_owned())),
        };
        Ok(Self::uniform(Periods {
            online: Period::years(online),
            archive: Period::years(archive),
        }))
    }

    /// The periods of `class`.
    pub fn periods(&self, class: RecordClass) -> Periods {
        self.0
            .get(&class)
            .copied()
            .unwrap_or_else(|| Self::default().0[&class])
    }

    fn check(&self, whose: &str) -> Result<(), PolicyError> {
        for (&class, periods) in &self.0 {
            if periods.total().approx_days() < class.minimum().approx_days() {
                return Err(PolicyError::BelowMinimum {
                    whose: whose.to_owned(),
                    class,
                    given: *periods,
                    minimum: class.minimum(),
                });
            }
        }
        Ok(())
    }
}

impl Default for ClassPolicy {
    fn default() -> Self {
        Self::uniform(Periods {
            online: Period::years(2),
            archive: Period::years(2),
        })
    }
}

/// The whole policy: a default and overrides per technician group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// For every group without its own.
    pub default: ClassPolicy,
    /// Groups with their own periods.
    #[serde(default)]
    pub groups: BTreeMap<String, ClassPolicy>,
}

impl Policy {
    /// The stored policy, or the default one if none was ever set.
    pub async fn load(accounts: &Accounts) -> Result<Self, PolicyError> {
        let policy: Option<Policy> = accounts.setting(SETTING).await?;
        Ok(policy.unwrap_or_default())
    }

    /// Stores it (after [`Policy::check`]).
    pub async fn store(&self, accounts: &Accounts) -> Result<(), PolicyError> {
        self.check()?;
        accounts.put_setting(SETTING, self).await?;
        Ok(())
    }

    /// Refuses periods shorter than a class's minimum.
    pub fn check(&self) -> Result<(), PolicyError> {
        self.default.check("the default policy")?;
        for (group, p) in &self.groups {
            p.check(&format!("group {group}"))?;
        }
        Ok(())
    }

    /// What applies to `group` (its own, or the default).
    pub fn for_group(&self, group: Option<&str>) -> &ClassPolicy {
        group
            .and_then(|g| self.groups.get(g))
            .unwrap_or(&self.default)
    }

    /// The shortest online period of any class of events (recordings are
    /// files, found apart) in any group: no event younger than this can be
    /// due for the archive.
    pub fn shortest_online(&self) -> Period {
        std::iter::once(&self.default)
            .chain(self.groups.values())
            .flat_map(|c| {
                RecordClass::ALL
                    .into_iter()
                    .filter(|&class| class != RecordClass::Recordings)
                    .map(|class| c.periods(class).online)
            })
            .min()
            .unwrap_or_default()
    }

    /// The shortest total period of any class in any group.
    pub fn shortest_total(&self) -> Period {
        self.all().map(|p| p.total()).min().unwrap_or_default()
    }

    /// Every class's periods in every group.
    pub fn all(&self) -> impl Iterator<Item = Periods> + '_ {
        std::iter::once(&self.default)
            .chain(self.groups.values())
            .flat_map(|c| RecordClass::ALL.map(|class| c.periods(class)))
    }
}

/// A policy could not be read, changed or stored.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A period that is not one.
    #[error("{text:?} is not a retention period: {why}")]
    BadPeriod {
        /// As given.
        text: String,
        /// Why.
        why: String,
    },
    /// Not a record class.
    #[error("{0:?} is not a record class (session_events, recordings, security_events, webhook_deliveries)")]
    UnknownClass(String),
    /// Not a preset.
    #[error("{0:?} is not a retention preset (default, hipaa)")]
    UnknownPreset(String),
    /// Shorter than the class may be kept.
    #[error("{whose} would keep {class} {given}, less than the {minimum} they must be kept")]
    BelowMinimum {
        /// The default policy or a group.
        whose: String,
        /// The class.
        class: RecordClass,
        /// What was asked for.
        given: Periods,
        /// The class's minimum.
        minimum: Period,
    },
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] audit_db::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        audit_db::time_us::parse(text).unwrap()
    }

    #[test]
    fn periods_parse_print_and_add_as_the_calendar_does() {
        let both: Periods = "2y+90d".parse().unwrap();
        assert_eq!(
            (both.online, both.archive.to_string()),
            (Period::years(2), "90d".into())
        );
        assert!("2y".parse::<Periods>().is_err());
        assert!("2y+2x".parse::<Periods>().is_err());
        let p: Period = "1y6m".parse().unwrap();
        assert_eq!(p.to_string(), "1y6m");
        assert_eq!("0".parse::<Period>().unwrap(), Period::ZERO);
        assert_eq!("90d".parse::<Period>().unwrap().to_string(), "90d");
        assert_eq!(
            Period::years(1).after(at("2024-02-29T10:00:00Z")),
            at("2025-02-28T10:00:00Z")
        );
        assert_eq!(
            "18m"
                .parse::<Period>()
                .unwrap()
                .after(at("2023-09-30T00:00:00Z")),
            at("2025-03-30T00:00:00Z")
        );
        assert_eq!(
            "1m10d"
                .parse::<Period>()
                .unwrap()
                .after(at("2023-01-31T00:00:00Z")),
            at("2023-03-10T00:00:00Z")
        );
        assert_eq!(
            "1y1d"
                .parse::<Period>()
                .unwrap()
                .before(at("2024-03-01T05:00:00Z")),
            at("2023-02-28T05:00:00Z")
        );
        for bad in ["-1y", "2", "y", "2w", "1y-2d", "", "200y", "99999999999d"] {
            assert!(bad.parse::<Period>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn minimums_are_enforced_and_presets_are_what_they_say() {
        let hipaa = ClassPolicy::preset("hipaa").unwrap();
        assert_eq!(
            hipaa.periods(RecordClass::Recordings).to_string(),
            "6y online + 0d archived"
        );
        let mut policy = Policy::default();
        assert_eq!(
            policy
                .default
                .periods(RecordClass::SessionEvents)
                .to_string(),
            "2y online + 2y archived"
        );
        policy.check().unwrap();
        policy.default.0.insert(
            RecordClass::SecurityEvents,
            Periods {
                online: "6m".parse().unwrap(),
                archive: "5m".parse().unwrap(),
            },
        );
        let e = policy.check().unwrap_err().to_string();
        assert!(e.contains("security_events") && e.contains("1y"), "{e}");
        policy.default.0.insert(
            RecordClass::SecurityEvents,
            Periods {
                online: "6m".parse().unwrap(),
                archive: "6m".parse().unwrap(),
            },
        );
        policy.check().unwrap();
        assert!(ClassPolicy::preset("gdpr").is_err());
        assert_eq!(
            "webhook-deliveries".parse::<RecordClass>().unwrap(),
            RecordClass::WebhookDeliveries
        );
    }

    proptest::proptest! {
        #[test]
        fn deadlines_decide_as_the_calendar_does(
            months in 0u32..1_200,
            days in 0u32..4_000,
            archive_months in 0u32..120,
            as_of in -2_000_000_000_000_000i64..8_000_000_000_000_000,
            start in proptest::prop_oneof![
                proptest::num::i64::ANY,
                -70_000_000_000_000_000i64..260_000_000_000_000_000,
            ],
            near in -40i64..40,
        ) {
            let online = Period { months, days };
            let policy = Policy {
                default: ClassPolicy::uniform(Periods {
                    online,
                    archive: Period { months: archive_months, days: 0 },
                }),
                groups: BTreeMap::new(),
            };
            let deadlines = Deadlines::new(&policy, as_of);
            let total = online.plus(Period { months: archive_months, days: 0 });
            // Anywhere, and a few days either side of the edge.
            let edge = online.before(as_of);
            for start in [start, edge.saturating_add(near * 86_400_000_000)] {
                for period in [online, total, Period::years(7)] {
                    proptest::prop_assert_eq!(
                        deadlines.passed(period, start),
                        period.after(start) <= as_of,
                        "{} from {}", period, start
                    );
                }
            }
        }
    }
}
