//! Calendar-aligned budget periods in UTC. A period is identified by its
//! start, so usage rows keyed by period start reset by themselves when the
//! clock enters the next one: no reset job.

string_enum! {
    pub enum Period("period") {
        Minute = "minute",
        Daily = "daily",
        /// Starts Monday 00:00 UTC.
        Weekly = "weekly",
        /// Starts on the 1st, 00:00 UTC.
        Monthly = "monthly",
        /// One period from the epoch on; never resets.
        Lifetime = "lifetime",
    }
}

const DAY: i64 = 86_400;

impl Period {
    /// (start, next start) of the period containing `now`; lifetime has no end.
    pub fn bounds(self, now: i64) -> (i64, Option<i64>) {
        let day = now.div_euclid(DAY);
        match self {
            Period::Minute => {
                let start = now - now.rem_euclid(60);
                (start, Some(start + 60))
            }
            Period::Daily => (day * DAY, Some((day + 1) * DAY)),
            Period::Weekly => {
                // 1970-01-01 was a Thursday.
                let monday = day - (day + 3).rem_euclid(7);
                (monday * DAY, Some((monday + 7) * DAY))
            }
            Period::Monthly => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * DAY,
                    Some(days_from_civil(ny, nm, 1) * DAY),
                )
            }
            Period::Lifetime => (0, None),
        }
    }

    /// The period as an adjective for messages: "daily", "per-minute", ...
    pub fn adjective(self) -> &'static str {
        match self {
            Period::Minute => "per-minute",
            other => other.as_str(),
        }
    }
}

/// `2026-12-01T00:00:00Z`
pub fn iso8601(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(DAY));
    let secs = ts.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The UTC day of `ts` as `YYYY-MM-DD`, the key of the daily usage tallies.
pub fn day(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Accepts a `YYYY-MM-DD` date (as in usage queries) and returns it unchanged.
pub fn parse_day(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shaped = b.len() == 10
        && digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10);
    let month: u32 = s.get(5..7)?.parse().ok()?;
    let day: u32 = s.get(8..10)?.parse().ok()?;
    (shaped && (1..=12).contains(&month) && (1..=31).contains(&day)).then_some(s)
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T13:45:10Z, a Sunday.
    const T: i64 = 1_795_355_110;

    #[test]
    fn periods_are_calendar_aligned() {
        assert_eq!(iso8601(T), "2026-11-22T13:45:10Z");
        assert_eq!(iso8601(Period::Minute.bounds(T).0), "2026-11-22T13:45:00Z");
        assert_eq!(iso8601(Period::Daily.bounds(T).0), "2026-11-22T00:00:00Z");
        assert_eq!(iso8601(Period::Weekly.bounds(T).0), "2026-11-16T00:00:00Z");
        assert_eq!(
            Period::Weekly.bounds(T).1.map(iso8601).as_deref(),
            Some("2026-11-23T00:00:00Z")
        );
        assert_eq!(iso8601(Period::Monthly.bounds(T).0), "2026-11-01T00:00:00Z");
        assert_eq!(
            Period::Monthly.bounds(T).1.map(iso8601).as_deref(),
            Some("2026-12-01T00:00:00Z")
        );
        assert_eq!(Period::Lifetime.bounds(T), (0, None));
    }

    #[test]
    fn month_and_year_rollover() {
        // 2026-12-31T23:59:59Z: next month is January of the next year.
        let eve = 1_798_761_599;
        assert_eq!(
            Period::Monthly.bounds(eve).1.map(iso8601).as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        // 2028-02-29 exists (leap year); March starts the day after.
        let leap = days_from_civil(2028, 2, 29) * DAY;
        assert_eq!(day(leap), "2028-02-29");
        assert_eq!(
            Period::Monthly.bounds(leap).1.map(day).as_deref(),
            Some("2028-03-01")
        );
    }

    #[test]
    fn day_strings() {
        assert_eq!(day(T), "2026-11-22");
        assert_eq!(parse_day("2026-11-01"), Some("2026-11-01"));
        for bad in [
            "2026-1-01",
            "2026-13-01",
            "2026-11-00",
            "20261101",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}
