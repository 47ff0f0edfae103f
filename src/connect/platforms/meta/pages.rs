//! The Pages a Facebook user manages, as `me/accounts` lists them:
//! `{"data":[{id, name, access_token, picture:{data:{url}},
//! instagram_business_account:{id, username, name, profile_picture_url}}],
//! "paging":{"cursors":{"before","after"},"next"}}`. An entry without a
//! usable id is skipped; a field that is missing or odd is left out rather
//! than refusing the Page.

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::answers::{Step, usable_id, usable_token};
use crate::connect::ConnectError;
use crate::providers::token_response::short;

/// The fields asked of each Page.
pub const FIELDS: &str =
    "id,name,access_token,picture,instagram_business_account{id,username,name,profile_picture_url}";

pub struct Page {
    pub id: String,
    pub name: Option<String>,
    /// The Page token; None when the user's role on the Page gives none.
    pub access_token: Option<SecretString>,
    pub picture_url: Option<String>,
    pub instagram: Option<InstagramAccount>,
}

/// The Instagram professional account linked to a Page.
pub struct InstagramAccount {
    pub id: String,
    pub username: Option<String>,
    pub name: Option<String>,
    pub picture_url: Option<String>,
}

/// One answer of the listing.
pub struct Listed {
    pub pages: Vec<Page>,
    /// The cursor of the next answer, when Meta says there is one.
    pub after: Option<String>,
}

pub fn parse(body: &Map<String, Value>) -> Result<Listed, ConnectError> {
    let Some(Value::Array(items)) = body.get("data") else {
        return Err(Step::Pages.refused("data is missing"));
    };
    let pages = items
        .iter()
        .filter_map(Value::as_object)
        .filter_map(page)
        .collect();
    let paging = body.get("paging").and_then(Value::as_object);
    let has_next = paging
        .and_then(|p| p.get("next"))
        .and_then(Value::as_str)
        .is_some_and(|next| !next.trim().is_empty());
    let after = if has_next {
        // The next answer is asked with this cursor at the configured host,
        // never at the URL in `next` (it carries the token; its host is
        // Meta's word).
        let cursor = paging
            .and_then(|p| p.get("cursors"))
            .and_then(|c| c.get("after"))
            .and_then(Value::as_str)
            .filter(|c| usable_id(c) && c.len() <= 1024)
            .ok_or_else(|| Step::Pages.refused("paging.next comes without a usable cursor"))?;
        Some(cursor.to_owned())
    } else {
        None
    };
    Ok(Listed { pages, after })
}

fn page(entry: &Map<String, Value>) -> Option<Page> {
    let id = id_of(entry)?;
    let access_token = match entry.get("access_token") {
        Some(Value::String(token)) if usable_token(token) => Some(SecretString::from(token.trim())),
        _ => None,
    };
    let picture_url = entry
        .get("picture")
        .and_then(|p| p.get("data"))
        .and_then(|d| d.get("url"))
        .and_then(Value::as_str)
        .and_then(url_text);
    let instagram = entry
        .get("instagram_business_account")
        .and_then(Value::as_object)
        .and_then(|account| {
            Some(InstagramAccount {
                id: id_of(account)?,
                username: text(account, "username"),
                name: text(account, "name"),
                picture_url: account
                    .get("profile_picture_url")
                    .and_then(Value::as_str)
                    .and_then(url_text),
            })
        });
    Some(Page {
        id,
        name: text(entry, "name"),
        access_token,
        picture_url,
        instagram,
    })
}

/// Graph ids are strings of digits; numbers are tolerated.
fn id_of(entry: &Map<String, Value>) -> Option<String> {
    let id = match entry.get("id")? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return None,
    };
    usable_id(&id).then_some(id)
}

/// A name fit for display: trimmed, shortened, no control characters.
fn text(entry: &Map<String, Value>, key: &str) -> Option<String> {
    let value = entry.get(key)?.as_str()?.trim();
    (!value.is_empty()).then(|| short(value).trim().to_owned())
}

/// An absolute http(s) URL of a reasonable length, or nothing.
pub fn url_text(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.len() > 2048 {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    matches!(url.scheme(), "https" | "http").then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    #[test]
    fn reads_pages_their_tokens_and_linked_instagram_accounts() {
        let listed = parse(
            json!({
                "data": [
                    {"id": "101", "name": "Bakery", "access_token": "EAAP1",
                     "picture": {"data": {"url": "https://scontent.example/p.jpg"}},
                     "instagram_business_account": {"id": "1784", "username": "bakery", "name": "The Bakery"}},
                    {"id": "102", "name": "No role"},
                    {"name": "no id"},
                    {"id": "bad id", "access_token": "x"},
                ],
                "paging": {"cursors": {"before": "A", "after": "B"}, "next": "https://graph.example/me/accounts?after=B"}
            })
            .as_object()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(listed.pages.len(), 2);
        let first = &listed.pages[0];
        assert_eq!(
            first.access_token.as_ref().unwrap().expose_secret(),
            "EAAP1"
        );
        assert_eq!(
            first.picture_url.as_deref(),
            Some("https://scontent.example/p.jpg")
        );
        let ig = first.instagram.as_ref().unwrap();
        assert_eq!(
            (ig.id.as_str(), ig.username.as_deref()),
            ("1784", Some("bakery"))
        );
        assert!(listed.pages[1].access_token.is_none());
        assert_eq!(listed.after.as_deref(), Some("B"));
    }

    #[test]
    fn the_last_answer_has_no_next_and_next_needs_a_cursor() {
        let last = parse(
            json!({"data": [], "paging": {"cursors": {"before": "A", "after": "B"}}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert!(last.after.is_none());
        assert!(
            parse(
                json!({"data": [], "paging": {"next": "https://x"}})
                    .as_object()
                    .unwrap()
            )
            .is_err()
        );
        assert!(parse(json!({"pages": []}).as_object().unwrap()).is_err());
    }
}
