//! The cron schedule and its slots. A slot is the scheduled instant a firing belongs to, so two
//! replicas that fire the same slot (a few hundred milliseconds apart) agree on one run key.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::config::ConfigError;

/// A parsed `FOLLOWUP_CRON` in `FOLLOWUP_TZ`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expr: String,
    pub tz: Tz,
    cron: Cron,
}

impl Schedule {
    /// Parses a six-field expression (seconds first), as tokio-cron-scheduler reads it.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, ConfigError> {
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| ConfigError::Cron {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            expr: expr.to_owned(),
            tz,
            cron,
        })
    }

    /// The slot a firing at `now` belongs to: the latest scheduled instant at or before it.
    pub fn slot_at(&self, now: DateTime<Utc>) -> Option<DateTime<Tz>> {
        // Cron slots are whole seconds; a firing a few hundred milliseconds late still maps to it.
        let now = now.with_nanosecond(0)?;
        self.cron
            .find_previous_occurrence(&now.with_timezone(&self.tz), true)
            .ok()
    }

    /// The next scheduled instant after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_next_occurrence(&now.with_timezone(&self.tz), false)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_late_firing_maps_to_its_slot_in_local_time() {
        let s = Schedule::parse("0 0 9 * * *", chrono_tz::Europe::Berlin).unwrap();
        // 08:00:00.7 UTC in winter is 09:00:00.7 in Berlin.
        let fired = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap()
            + chrono::Duration::milliseconds(700);
        let slot = s.slot_at(fired).unwrap();
        assert_eq!(slot.to_rfc3339(), "2026-11-29T09:00:00+01:00");
        // Summer time: the same local hour, another UTC offset.
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 7, 0, 1).unwrap();
        assert_eq!(
            s.slot_at(summer).unwrap().to_rfc3339(),
            "2026-07-01T09:00:00+02:00"
        );
    }

    #[test]
    fn rejects_a_five_field_expression_with_a_reason() {
        let err = Schedule::parse("0 9 * * *", chrono_tz::Europe::Berlin).unwrap_err();
        assert!(err.to_string().contains("FOLLOWUP_CRON"), "{err}");
    }
}
