//! Time as a parameter: roles take a [`Clock`] so tests control it, and every instant is
//! a [`Timestamp`].

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, as Unix seconds: the one representation of time in the host services.
///
/// SkyPilot's times are whole seconds and so are the host database's cluster times; poll
/// and audit times carry fractions. A whole timestamp is written as an integer (JSON and
/// SQLite), any other as a float, so each keeps the form it has always had.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Timestamp(f64);

/// The largest whole second that an `f64` holds exactly (2^53).
const EXACT_SECS: f64 = 9_007_199_254_740_992.0;

impl Timestamp {
    pub(crate) const EPOCH: Timestamp = Timestamp(0.0);

    /// From whole Unix seconds (SkyPilot's `launched_at`, an INTEGER column).
    pub fn from_secs(secs: i64) -> Timestamp {
        // Exact for every second within ±2^53, i.e. any time SkyPilot can mean.
        Timestamp(secs as f64)
    }

    /// From fractional Unix seconds; a value that is not finite is the epoch.
    pub fn from_secs_f64(secs: f64) -> Timestamp {
        if secs.is_finite() {
            Timestamp(secs)
        } else {
            Timestamp::EPOCH
        }
    }

    pub(crate) fn as_secs_f64(self) -> f64 {
        self.0
    }

    /// The whole second this instant falls in (rounded down).
    pub fn floor(self) -> Timestamp {
        Timestamp(self.0.floor())
    }

    /// Whole seconds, when the timestamp is a whole second within `i64`'s exact range.
    pub(crate) fn whole_secs(self) -> Option<i64> {
        let whole = self.0.fract() == 0.0 && self.0.abs() <= EXACT_SECS;
        // Within ±2^53 the conversion is exact.
        whole.then_some(self.0 as i64)
    }

    /// Seconds from `earlier` to `self`; negative when `earlier` is later.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        self.0 - earlier.0
    }

    /// Seconds from `earlier` to `self`, never negative (an age).
    pub fn age_since(self, earlier: Timestamp) -> f64 {
        self.secs_since(earlier).max(0.0)
    }

    pub(crate) fn plus_secs(self, secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(self.0 + secs)
    }

    pub(crate) fn minus_secs(self, secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(self.0 - secs)
    }
}

/// `t + secs`: later by `secs` seconds.
impl std::ops::Add<f64> for Timestamp {
    type Output = Timestamp;
    fn add(self, secs: f64) -> Timestamp {
        self.plus_secs(secs)
    }
}

/// `t - secs`: earlier by `secs` seconds.
impl std::ops::Sub<f64> for Timestamp {
    type Output = Timestamp;
    fn sub(self, secs: f64) -> Timestamp {
        self.minus_secs(secs)
    }
}

/// `later - earlier`: seconds between two instants.
impl std::ops::Sub<Timestamp> for Timestamp {
    type Output = f64;
    fn sub(self, earlier: Timestamp) -> f64 {
        self.secs_since(earlier)
    }
}

impl From<f64> for Timestamp {
    fn from(secs: f64) -> Timestamp {
        Timestamp::from_secs_f64(secs)
    }
}

impl From<i64> for Timestamp {
    fn from(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.whole_secs() {
            Some(s) => write!(f, "{s}"),
            None => write!(f, "{:.3}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.whole_secs() {
            Some(secs) => s.serialize_i64(secs),
            None => s.serialize_f64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secs = f64::deserialize(d)?;
        if secs.is_finite() {
            Ok(Timestamp(secs))
        } else {
            Err(serde::de::Error::custom(
                "a timestamp must be a finite number of Unix seconds",
            ))
        }
    }
}

impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.whole_secs() {
            Some(secs) => ToSqlOutput::from(secs),
            None => ToSqlOutput::from(self.0),
        })
    }
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Integer(i) => Ok(Timestamp::from_secs(i)),
            ValueRef::Real(f) if f.is_finite() => Ok(Timestamp(f)),
            ValueRef::Real(_) => Err(FromSqlError::Other(
                "a timestamp that is not a finite number".into(),
            )),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| Timestamp(d.as_secs_f64()))
            .unwrap_or(Timestamp::EPOCH)
    }
}

/// `2026-11-30 09:41:07 UTC` from Unix seconds (the epoch for a time out of range).
pub(crate) fn utc(t: Timestamp) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let secs = t.floor().whole_secs().unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(format)
        .unwrap_or_else(|_| format!("{secs} (Unix time)"))
}

/// A moment for people: its UTC date-time and how long ago it was, e.g.
/// `2026-12-05 05:43:00 UTC, 3m ago` (`…, in 2m` for a moment after `now`).
pub(crate) fn when(t: Timestamp, now: Timestamp) -> String {
    let d = now.secs_since(t);
    if d >= 0.0 {
        format!("{}, {} ago", utc(t), human_duration(d))
    } else {
        format!("{}, in {}", utc(t), human_duration(-d))
    }
}

/// Human form of a duration in seconds: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub(crate) fn human_duration(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        // Saturating float-to-int conversion; whole seconds are all that is shown.
        secs as u64
    } else {
        0
    };
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{}h", s / 3600)
            } else {
                format!("{}h {}m", s / 3600, m)
            }
        }
        _ => {
            let h = (s % 86_400) / 3600;
            if h == 0 {
                format!("{}d", s / 86_400)
            } else {
                format!("{}d {}h", s / 86_400, h)
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn moments_for_people() {
        let now = Timestamp::from_secs(1_800_000_000);
        assert_eq!(
            when(Timestamp::from_secs(1_800_000_000 - 185), now),
            "2027-01-15 07:56:55 UTC, 3m ago"
        );
        assert_eq!(
            when(Timestamp::from_secs(1_800_000_000 + 120), now),
            "2027-01-15 08:02:00 UTC, in 2m"
        );
    }

    use super::*;

    #[test]
    fn human() {
        assert_eq!(human_duration(-3.0), "0s");
        assert_eq!(human_duration(59.9), "59s");
        assert_eq!(human_duration(60.0), "1m");
        assert_eq!(human_duration(3600.0), "1h");
        assert_eq!(human_duration(3660.0), "1h 1m");
        assert_eq!(human_duration(90_000.0), "1d 1h");
        assert_eq!(human_duration(f64::NAN), "0s");
    }

    #[test]
    fn whole_seconds_keep_their_integer_form() {
        let t = Timestamp::from_secs(1_700_000_000);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000");
        assert_eq!(t.whole_secs(), Some(1_700_000_000));
        let f = Timestamp::from_secs_f64(1_700_000_000.25);
        assert_eq!(serde_json::to_string(&f).unwrap(), "1700000000.25");
        assert_eq!(f.whole_secs(), None);
        assert_eq!(f.floor(), t);
        let back: Timestamp = serde_json::from_str("1700000000.25").unwrap();
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Timestamp>("\"x\"").is_err());
    }

    #[test]
    fn sqlite_round_trip_in_both_column_kinds() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (i INTEGER, r REAL)")
            .unwrap();
        let whole = Timestamp::from_secs(100);
        let frac = Timestamp::from_secs_f64(100.5);
        c.execute("INSERT INTO t VALUES (?1, ?2)", (whole, frac))
            .unwrap();
        c.execute("INSERT INTO t VALUES (?1, ?2)", (whole, whole))
            .unwrap();
        let rows: Vec<(Timestamp, Timestamp, String, String)> = c
            .prepare("SELECT i, r, typeof(i), typeof(r) FROM t")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows[0], (whole, frac, "integer".into(), "real".into()));
        assert_eq!(rows[1], (whole, whole, "integer".into(), "real".into()));
    }

    #[test]
    fn ages_and_arithmetic() {
        let a = Timestamp::from_secs(100);
        let b = a.plus_secs(30.5);
        assert_eq!(b.secs_since(a), 30.5);
        assert_eq!(a.age_since(b), 0.0);
        assert_eq!(b.minus_secs(30.5), a);
        assert_eq!(Timestamp::from_secs_f64(f64::NAN), Timestamp::EPOCH);
    }
}
