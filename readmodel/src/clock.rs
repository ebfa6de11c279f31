//! An injectable clock. Applying events never reads it (day keys come from event times, so a
//! rebuild is deterministic); it only decides which local day is "today" for gauges, and tests
//! replace it to cross local midnight.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Source of "now".
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// A clock that always shows `at`.
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(move || at))
    }

    /// A clock driven by any function, e.g. one a test advances.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// The local calendar day of `at` in `tz`.
pub fn local_date(at: DateTime<Utc>, tz: Tz) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The instant of local midnight that starts `date` in `tz`. On a day whose midnight does not
/// exist (a DST jump at 00:00) it is the first local instant of that day.
pub fn local_midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut time = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&time).earliest() {
            return at.with_timezone(&Utc);
        }
        time += chrono::Duration::minutes(30);
    }
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_day_follows_the_zone() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let late = Utc.with_ymd_and_hms(2026, 11, 29, 22, 59, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 29, 23, 1, 0).unwrap();
        assert_eq!(local_date(late, tz).to_string(), "2026-11-29");
        assert_eq!(local_date(after, tz).to_string(), "2026-11-30");
        assert_eq!(
            local_midnight(local_date(after, tz), tz),
            Utc.with_ymd_and_hms(2026, 11, 29, 23, 0, 0).unwrap()
        );
    }
}
