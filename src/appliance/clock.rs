//! The appliance's times: Unix seconds, shown and parsed as RFC 3339 in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether an expiry time (Unix seconds) has passed.
pub fn expired(expires: Option<u64>) -> bool {
    expires.is_some_and(|e| e <= now())
}

/// Refuses a bundle at `path` whose expiry (Unix seconds) has passed.
pub fn refuse_expired(path: &std::path::Path, expires: Option<u64>) -> crate::error::Result<()> {
    match expires.filter(|&e| e <= now()) {
        Some(e) => Err(crate::Error::Expired {
            path: path.to_owned(),
            when: fmt_time(e),
        }),
        None => Ok(()),
    }
}

/// Formats Unix seconds as RFC 3339 (UTC, seconds).
pub fn fmt_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The date part (`YYYY-MM-DD`) of [`fmt_time`].
pub fn fmt_day(secs: u64) -> String {
    fmt_time(secs).chars().take(10).collect()
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_expiry_is_inclusive() {
        let t = parse_time("2026-11-30").unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(fmt_time(secs), "2026-11-30T00:00:00Z");
        assert_eq!(fmt_day(secs), "2026-11-30");
        assert!(parse_time("tomorrow").is_none());
        assert!(expired(Some(now())));
        assert!(!expired(Some(now() + 3600)));
        assert!(!expired(None));
    }
}
