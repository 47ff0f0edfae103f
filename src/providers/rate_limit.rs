//! How long a platform asks to be left alone, read from its headers. The
//! values are untrusted: every one is parsed without panicking, with checked
//! arithmetic, and any wait is clamped to `MAX_WAIT`; what cannot be read is
//! None (the engine's own backoff applies then).

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// The longest wait a header can ask for: a day. A platform that asks for
/// more is asked again after a day.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Slack added to a reset time, for clock skew.
const SKEW: Duration = Duration::from_secs(1);

/// `Retry-After`: delta-seconds, or an HTTP date (IMF-fixdate, the obsolete
/// RFC 850 and asctime forms), or, leniently, an ISO 8601 timestamp. A date
/// in the past means now.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_WAIT));
    }
    let at = http_date(value).or_else(|| iso_8601(value))?;
    Some(until(at, now, Duration::ZERO))
}

/// An epoch-seconds reset (`x-rate-limit-reset`, `ratelimit-reset`): the
/// wait until then plus a second of slack; a reset already past means now.
pub fn epoch_reset(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // i128 holds any difference of two i64; out-of-range text is far past or
    // far ahead.
    let reset: i128 = value.parse().unwrap_or(if value.starts_with('-') {
        i128::MIN / 2
    } else {
        i128::MAX / 2
    });
    let ahead = reset - i128::from(now.timestamp());
    let seconds = u64::try_from(ahead.max(0)).unwrap_or(u64::MAX);
    Some(
        Duration::from_secs(seconds)
            .saturating_add(SKEW)
            .min(MAX_WAIT),
    )
}

/// An ISO 8601 reset time (Mastodon's `X-RateLimit-Reset`): the wait until
/// then plus a second of slack.
pub fn iso_reset(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let at = iso_8601(value.trim())?;
    Some(until(at, now, SKEW))
}

/// The longest `estimated_time_to_regain_access` (minutes) in
/// `X-Business-Use-Case-Usage: {"<id>":[{"estimated_time_to_regain_access":N,..}]}`;
/// None when absent or zero.
pub fn business_use_case_wait(header: &str) -> Option<Duration> {
    let usage: Value = serde_json::from_str(header).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes.saturating_mul(60)).min(MAX_WAIT))
}

/// The highest percentage in `X-App-Usage: {"call_count":..,"total_cputime":..,"total_time":..}`,
/// capped at 100 (the platform throttles there; more says nothing new).
pub fn app_usage_percent(header: &str) -> Option<u64> {
    let usage: Value = serde_json::from_str(header).ok()?;
    usage
        .as_object()?
        .values()
        .filter_map(|v| {
            v.as_u64().or_else(|| {
                // A float cast saturates (NaN is 0): no overflow.
                v.as_f64().filter(|f| *f >= 0.0).map(|f| f.ceil() as u64)
            })
        })
        .max()
        .map(|percent| percent.min(100))
}

/// The wait from `now` until `at`, plus `slack`, clamped to `MAX_WAIT`.
fn until(at: DateTime<Utc>, now: DateTime<Utc>, slack: Duration) -> Duration {
    // Both are valid timestamps, so their difference is representable.
    let ahead = at.signed_duration_since(now).to_std().unwrap_or_default();
    ahead.saturating_add(slack).min(MAX_WAIT)
}

fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    // RFC 9110 section 5.6.7: recipients accept the obsolete forms too.
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|at| at.and_utc())
}

fn iso_8601(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn retry_after_in_each_form() {
        let secs = Duration::from_secs;
        assert_eq!(retry_after("120", now()), Some(secs(120)));
        assert_eq!(retry_after(" 0 ", now()), Some(secs(0)));
        assert_eq!(
            retry_after("99999999999999999999999", now()),
            Some(MAX_WAIT)
        );
        assert_eq!(
            retry_after("Sun, 01 Jun 2025 12:02:00 GMT", now()),
            Some(secs(120))
        );
        assert_eq!(
            retry_after("Sunday, 01-Jun-25 12:02:00 GMT", now()),
            Some(secs(120))
        );
        assert_eq!(
            retry_after("Sun Jun  1 12:02:00 2025", now()),
            Some(secs(120))
        );
        assert_eq!(retry_after("2025-06-01T12:02:00Z", now()), Some(secs(120)));
        assert_eq!(
            retry_after("Sat, 01 Jan 2000 00:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now()),
            Some(MAX_WAIT)
        );
        for garbage in ["", "soon", "-5", "1.5", "12s", "+3", "٣"] {
            assert_eq!(retry_after(garbage, now()), None, "{garbage:?}");
        }
    }

    #[test]
    fn epoch_resets_never_overflow() {
        let at = now().timestamp();
        assert_eq!(
            epoch_reset(&(at + 60).to_string(), now()),
            Some(Duration::from_secs(61))
        );
        assert_eq!(epoch_reset("1000", now()), Some(SKEW));
        for extreme in [
            i64::MIN.to_string(),
            i64::MAX.to_string(),
            "-99999999999999999999999999".to_owned(),
            "99999999999999999999999999".to_owned(),
        ] {
            let wait = epoch_reset(&extreme, now()).unwrap();
            assert!(wait >= SKEW && wait <= MAX_WAIT, "{extreme}: {wait:?}");
        }
        assert_eq!(epoch_reset("soon", now()), None);
        assert_eq!(epoch_reset("-", now()), None);
    }

    #[test]
    fn usage_headers_never_overflow() {
        let max = format!(
            r#"{{"1":[{{"estimated_time_to_regain_access":{}}}]}}"#,
            u64::MAX
        );
        assert_eq!(business_use_case_wait(&max), Some(MAX_WAIT));
        assert_eq!(
            business_use_case_wait(r#"{"1":[{"estimated_time_to_regain_access":7}]}"#),
            Some(Duration::from_secs(420))
        );
        assert_eq!(
            business_use_case_wait(r#"{"1":[{"estimated_time_to_regain_access":0}]}"#),
            None
        );
        assert_eq!(app_usage_percent(r#"{"call_count":1e308}"#), Some(100));
        assert_eq!(
            app_usage_percent(r#"{"call_count":-4.5,"total_time":40}"#),
            Some(40)
        );
    }

    /// Timestamps chrono can represent in a four-digit year.
    fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
        (-62_135_596_800i64..=253_402_300_799).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,40}",
            "[0-9]{0,40}",
            "-?[0-9]{1,30}",
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            timestamp().prop_map(|t| t.to_rfc2822()),
            timestamp().prop_map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
            timestamp().prop_map(|t| t.format("%A, %d-%b-%y %H:%M:%S GMT").to_string()),
            timestamp().prop_map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string()),
            timestamp().prop_map(|t| t.to_rfc3339()),
        ]
    }

    fn usage_json() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| if n.is_finite() {
                n.to_string()
            } else {
                "1e999".into()
            }),
            "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        prop::collection::vec(number, 0..4).prop_map(|numbers| {
            let entries: Vec<String> = numbers
                .iter()
                .map(|n| format!(r#"{{"estimated_time_to_regain_access":{n},"call_count":{n}}}"#))
                .collect();
            let usage: Vec<String> = numbers.iter().map(|n| format!(r#""k{n}":{n}"#)).collect();
            format!(r#"{{"1":[{}],{}}}"#, entries.join(","), usage.join(","))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// Any header text at any moment: no panic, and a wait within the cap
        /// or nothing.
        #[test]
        fn any_header_gives_a_capped_wait_or_none(value in header_text(), now in timestamp()) {
            for wait in [
                retry_after(&value, now),
                epoch_reset(&value, now),
                iso_reset(&value, now),
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(wait <= MAX_WAIT, "{value:?}: {wait:?}");
            }
        }

        /// An HTTP date is read exactly (to the cap), whatever the year.
        #[test]
        fn http_dates_read_as_the_time_until_then(at in timestamp(), now in timestamp()) {
            let expected = (at - now).to_std().unwrap_or_default().min(MAX_WAIT);
            let imf = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            prop_assert_eq!(retry_after(&imf, now), Some(expected));
            prop_assert_eq!(retry_after(&at.to_rfc3339(), now), Some(expected));
            prop_assert_eq!(iso_reset(&at.to_rfc3339(), now), Some((expected + SKEW).min(MAX_WAIT)));
        }

        /// Epoch resets: any integer, read as the time until then.
        #[test]
        fn epoch_resets_read_as_the_time_until_then(reset in any::<i64>(), now in timestamp()) {
            let ahead = (i128::from(reset) - i128::from(now.timestamp())).max(0);
            let expected = Duration::from_secs(u64::try_from(ahead).unwrap_or(u64::MAX))
                .saturating_add(SKEW)
                .min(MAX_WAIT);
            prop_assert_eq!(epoch_reset(&reset.to_string(), now), Some(expected));
        }

        /// Usage headers with any numbers: no panic, within the caps.
        #[test]
        fn usage_headers_stay_within_their_caps(header in usage_json()) {
            if let Some(wait) = business_use_case_wait(&header) {
                prop_assert!(wait <= MAX_WAIT && !wait.is_zero());
            }
            if let Some(percent) = app_usage_percent(&header) {
                prop_assert!(percent <= 100);
            }
        }
    }
}
