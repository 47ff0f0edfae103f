//! Query parameters shared by the listing endpoints: page sizes, and the
//! cursors the API hands out (anything else given as a cursor is refused,
//! without repeating it).

use chrono::DateTime;

use super::ApiError;
use crate::domain::AccountId;
use crate::store::accounts::ListCursor;

/// `limit`, or `default` when absent; 422 outside 1..=`max`.
pub fn limit(value: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_field(
            "limit",
            format!("limit: must be between 1 and {max}"),
        )),
    }
}

/// A cursor parameter this API never returned.
pub fn bad_cursor(field: &str) -> ApiError {
    ApiError::invalid_field(field, format!("{field}: not a cursor this API returned"))
}

/// The account listing's cursor, `^[0-9]{1,18}-acc_[0-9a-f]{32}$`:
/// microseconds since 1970 and an account id. Any text of this shape is a
/// position in the listing, so the document can say exactly what is
/// accepted (the attempt and event cursors are decimals of at most 18
/// digits, likewise).
pub fn encode_list_cursor(cursor: &ListCursor) -> String {
    format!(
        "{}-{}",
        cursor.connected_at.timestamp_micros().max(0),
        cursor.id
    )
}

pub fn decode_list_cursor(text: &str) -> Result<ListCursor, ApiError> {
    let invalid = || bad_cursor("cursor");
    let (micros, id) = text.split_once('-').ok_or_else(invalid)?;
    if micros.is_empty() || micros.len() > 18 || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    // The id goes to the database: only a well-formed one (no NUL, no
    // arbitrary text) is a position.
    let id: AccountId = id.parse().map_err(|_| invalid())?;
    Ok(ListCursor {
        connected_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
        id: id.as_str().to_owned(),
    })
}

/// The attempt history's cursor: the last attempt id seen (positive).
pub fn decode_attempts_cursor(text: &str) -> Result<i64, ApiError> {
    decimal(text)
        .filter(|n| *n >= 1)
        .ok_or_else(|| bad_cursor("cursor"))
}

/// The event feed's cursor: a sequence number (0 or more); empty is 0.
pub fn decode_events_cursor(text: Option<&str>) -> Result<i64, ApiError> {
    match text {
        None | Some("") => Ok(0),
        Some(text) => decimal(text)
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad_cursor("after")),
    }
}

/// Plain decimal digits only (`i64::from_str` also takes a sign), at most
/// 18 of them: always an i64.
fn decimal(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use proptest::prelude::*;

    #[test]
    fn list_cursors_round_trip() {
        let cursor = ListCursor {
            connected_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
            id: AccountId::generate().as_str().to_owned(),
        };
        assert_eq!(
            decode_list_cursor(&encode_list_cursor(&cursor)).unwrap(),
            cursor
        );
    }

    #[test]
    fn a_cursor_hiding_a_nul_or_foreign_id_is_refused() {
        let id = AccountId::generate();
        for text in [
            format!("1-{id}\0"),
            "1-acc_\0".to_owned(),
            "1-' OR 1=1 --".to_owned(),
            "1-".to_owned(),
            format!("-1-{id}"),
            format!("x-{id}"),
            format!("9999999999999999999-{id}"),
            "-".to_owned(),
        ] {
            let error = decode_list_cursor(&text).unwrap_err();
            assert_eq!(error.status.as_u16(), 422, "{text:?}");
            assert_eq!(error.body.error.field.as_deref(), Some("cursor"));
        }
    }

    /// What the document promises is what is accepted.
    #[test]
    fn documented_patterns_match_the_parsers() {
        let id = AccountId::generate();
        assert!(decode_list_cursor(&format!("999999999999999999-{id}")).is_ok());
        assert!(decode_list_cursor(&format!("0-{id}")).is_ok());
        assert_eq!(
            decode_attempts_cursor("999999999999999999").unwrap(),
            999_999_999_999_999_999
        );
        assert_eq!(
            decode_events_cursor(Some("999999999999999999")).unwrap(),
            999_999_999_999_999_999
        );
    }

    fn refused_without_echo(result: Result<impl std::fmt::Debug, ApiError>, text: &str) {
        if let Err(e) = result {
            assert_eq!(e.status.as_u16(), 422);
            assert!(e.body.error.field.is_some());
            if text.len() >= 4 {
                assert!(!e.body.error.message.contains(text), "echoed {text:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any text: no panic; a cursor that decodes holds a well-formed id.
        #[test]
        fn list_cursor_decoding_never_panics(text in ".{0,200}") {
            match decode_list_cursor(&text) {
                Ok(cursor) => prop_assert!(cursor.id.parse::<AccountId>().is_ok()),
                Err(e) => refused_without_echo(Err::<(), _>(e), &text),
            }
        }

        /// Anything of the documented shape is a position; near misses are
        /// refused.
        #[test]
        fn list_cursors_of_the_documented_shape(micros in "[0-9]{1,20}", id in "acc_[0-9a-f]{30,34}|[ -~]{0,40}") {
            let text = format!("{micros}-{id}");
            let shaped = micros.len() <= 18 && id.parse::<AccountId>().is_ok();
            prop_assert_eq!(decode_list_cursor(&text).is_ok(), shaped, "{}", text);
        }

        #[test]
        fn numeric_cursors_are_in_range_or_refused(text in "[-+0-9a-z ]{0,25}|.{0,40}") {
            match decode_attempts_cursor(&text) {
                Ok(n) => prop_assert!(n >= 1),
                Err(e) => refused_without_echo(Err::<(), _>(e), &text),
            }
            match decode_events_cursor(Some(&text)) {
                Ok(n) => prop_assert!(n >= 0),
                Err(e) => refused_without_echo(Err::<(), _>(e), &text),
            }
        }

        #[test]
        fn limits_are_in_range_or_refused(n in any::<Option<i64>>()) {
            match limit(n, 50, 100) {
                Ok(v) => prop_assert!((1..=100).contains(&v)),
                Err(e) => prop_assert_eq!(e.body.error.field.as_deref(), Some("limit")),
            }
        }
    }
}
