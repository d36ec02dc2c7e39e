//! The range and buckets of a usage query: whole UTC days, `to` exclusive, buckets aligned to
//! the calendar (ISO weeks start on Monday) and clipped to the range.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate};
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::error::Failure;

/// Days a range covers when `from` is not given.
pub const DEFAULT_DAYS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Week,
    Month,
}

impl Granularity {
    pub fn parse(text: Option<&str>) -> Result<Granularity, Failure> {
        match text.unwrap_or("day") {
            "day" => Ok(Granularity::Day),
            "week" => Ok(Granularity::Week),
            "month" => Ok(Granularity::Month),
            _ => Err(Failure::invalid(
                "granularity",
                "must be one of day, week, month",
            )),
        }
    }

    /// The `date_trunc` unit of the bucket.
    pub fn unit(self) -> &'static str {
        match self {
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    /// The first day of the bucket holding `day`.
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => day,
            Granularity::Week => day - Days::new(u64::from(day.weekday().num_days_from_monday())),
            Granularity::Month => day.with_day(1).unwrap_or(day),
        }
    }

    fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => start + Days::new(1),
            Granularity::Week => start + Days::new(7),
            Granularity::Month => start + Months::new(1),
        }
    }
}

/// Whole UTC days: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// A bucket: its calendar start (the key the counts are grouped by) and the part of the range
/// it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub key: NaiveDate,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// `YYYY-MM-DD`, or an RFC 3339 time at midnight UTC.
fn parse_day(field: &'static str, text: &str) -> Result<NaiveDate, Failure> {
    let text = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day);
    }
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => {
            let utc = time.to_utc();
            if utc.time() == chrono::NaiveTime::MIN {
                Ok(utc.date_naive())
            } else {
                Err(Failure::invalid(
                    field,
                    "must fall on a UTC day boundary (figures are kept per UTC day)",
                ))
            }
        }
        Err(_) => Err(Failure::invalid(
            field,
            "must be a date (YYYY-MM-DD) or an RFC 3339 time at midnight UTC",
        )),
    }
}

impl DayRange {
    /// The range asked for: `to` defaults to tomorrow (today included), `from` to
    /// [`DEFAULT_DAYS`] before `to`. Refused (422, naming the field) when unparseable, empty or
    /// longer than `max_days`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
        max_days: u32,
    ) -> Result<DayRange, Failure> {
        let to = match to {
            Some(text) => parse_day("to", text)?,
            None => today + Days::new(1),
        };
        let from = match from {
            Some(text) => parse_day("from", text)?,
            None => to - Days::new(DEFAULT_DAYS),
        };
        if from >= to {
            return Err(Failure::invalid(
                "from",
                "must be before `to` (which is exclusive)",
            ));
        }
        if (to - from).num_days() > i64::from(max_days) {
            return Err(Failure::invalid(
                "to",
                format!("a range may span at most {max_days} days"),
            ));
        }
        Ok(DayRange { from, to })
    }

    /// Every bucket of the range in order, empty ones included.
    pub fn buckets(self, granularity: Granularity) -> Vec<Bucket> {
        let mut buckets = Vec::new();
        let mut key = granularity.start_of(self.from);
        while key < self.to {
            let next = granularity.next(key);
            buckets.push(Bucket {
                key,
                start: key.max(self.from),
                end: next.min(self.to),
            });
            key = next;
        }
        buckets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weeks_start_on_monday_and_are_clipped_to_the_range() {
        let range = DayRange::parse(
            Some("2026-12-02"),
            Some("2026-12-16"),
            day("2026-12-03"),
            731,
        )
        .unwrap();
        let buckets = range.buckets(Granularity::Week);
        let spans: Vec<_> = buckets
            .iter()
            .map(|b| (b.key.to_string(), b.start.to_string(), b.end.to_string()))
            .collect();
        assert_eq!(
            spans,
            [
                (
                    "2026-11-30".into(),
                    "2026-12-02".into(),
                    "2026-12-07".into()
                ),
                (
                    "2026-12-07".into(),
                    "2026-12-07".into(),
                    "2026-12-14".into()
                ),
                (
                    "2026-12-14".into(),
                    "2026-12-14".into(),
                    "2026-12-16".into()
                ),
            ]
        );
    }

    #[test]
    fn months_and_days_cover_the_range_without_gaps() {
        let range = DayRange::parse(
            Some("2026-01-31"),
            Some("2026-03-02"),
            day("2026-03-01"),
            731,
        )
        .unwrap();
        let months = range.buckets(Granularity::Month);
        assert_eq!(months.len(), 3);
        assert_eq!(months[1].start, day("2026-02-01"));
        assert_eq!(months[2].end, day("2026-03-02"));
        assert_eq!(range.buckets(Granularity::Day).len(), 30);
    }

    #[test]
    fn bad_ranges_name_their_field() {
        let today = day("2026-12-03");
        let field =
            |from: Option<&str>, to: Option<&str>| match DayRange::parse(from, to, today, 731) {
                Err(Failure::InvalidField { field, .. }) => field,
                other => panic!("expected a refusal, got {other:?}"),
            };
        assert_eq!(field(Some("yesterday"), None), "from");
        assert_eq!(field(None, Some("2026-13-01")), "to");
        assert_eq!(field(Some("2026-12-03T10:00:00Z"), None), "from");
        assert_eq!(field(Some("2026-12-05"), Some("2026-12-05")), "from");
        assert_eq!(field(Some("2020-01-01"), Some("2026-01-01")), "to");
        let defaults = DayRange::parse(None, None, today, 731).unwrap();
        assert_eq!(
            (defaults.from, defaults.to),
            (day("2026-11-04"), day("2026-12-04"))
        );
        let midnight =
            DayRange::parse(Some("2026-12-01T00:00:00+00:00"), None, today, 731).unwrap();
        assert_eq!(midnight.from, day("2026-12-01"));
    }
}
