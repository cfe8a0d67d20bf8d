//! RFC 3339 timestamps (UTC, microseconds) for events, without a date
//! crate: days since 1970 to a civil date (Howard Hinnant's algorithm).

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-21T10:00:00.123456Z`; times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// (year, month, day) of `days` since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s: u64, us: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us);
        // (case, time, text)
        let cases = [
            ("epoch", at(0, 0), "1970-01-01T00:00:00.000000Z"),
            (
                "leap day",
                at(951_782_400, 5),
                "2000-02-29T00:00:00.000005Z",
            ),
            (
                "2026",
                at(1_795_256_130, 123_456),
                "2026-11-21T10:15:30.123456Z",
            ),
            (
                "end of 1999",
                at(946_684_799, 0),
                "1999-12-31T23:59:59.000000Z",
            ),
        ];
        for (case, t, want) in cases {
            assert_eq!(rfc3339(t), want, "case: {case}");
        }
    }
}
