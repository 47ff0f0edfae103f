//! The page shell every console page shares, and the small pieces pages
//! are made of: times, durations, health badges, the CSRF field.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// What the shell needs to know: where the console lives, and the signed-in
/// operator (None on the sign-in page).
pub struct Shell<'a> {
    pub base: &'a str,
    pub operator: Option<(&'a str, &'a str)>,
}

/// A whole page: `title` in the tab and as the one `h1`.
pub fn page(shell: &Shell<'_>, title: &str, body: Markup) -> Markup {
    let base = shell.base;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tokenwarden" }
                // No favicon request (and no 404 for it).
                link rel="icon" href="data:,";
                link rel="stylesheet" href={ (base) "/static/console.css" };
                script src={ (base) "/static/console.js" } defer {}
            }
            body {
                header.top {
                    a.brand href={ (base) "/" } { "tokenwarden" }
                    @if let Some((key_id, csrf)) = shell.operator {
                        nav aria-label="Console" {
                            a href={ (base) "/" } { "Overview" }
                            a href={ (base) "/accounts" } { "Accounts" }
                        }
                        form.sign-out method="post" action={ (base) "/sign-out" } {
                            (csrf_field(csrf))
                            span.operator { "Signed in as " strong { (key_id) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A time in UTC with how far it is from now.
pub fn when(at: Option<DateTime<Utc>>) -> Markup {
    match at {
        None => html! { span.muted { "—" } },
        Some(at) => html! {
            time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) {
                (at.format("%Y-%m-%d %H:%M:%S UTC")) " "
                span.muted { "(" (relative(at, Utc::now())) ")" }
            }
        },
    }
}

/// `in 3h 12m` or `5m ago`.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let span = span(seconds.unsigned_abs());
    if seconds >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Seconds as the two largest units: `2d 4h`, `3m 20s`.
pub fn span(seconds: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = seconds;
    for (size, unit) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

pub fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

/// A health word as a badge; its colour class is the word itself.
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge " (word) } { (word.replace('_', " ")) } }
}

/// Inline SVG is part of the document, not a resource: the strict CSP
/// allows it. Only numbers and fixed words go into it.
pub fn svg(markup: String) -> Markup {
    PreEscaped(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(61), "1m 1s");
        assert_eq!(span(3_600), "1h");
        assert_eq!(span(90_061), "1d 1h");
        let now = Utc::now();
        assert_eq!(
            relative(now + chrono::TimeDelta::seconds(120), now),
            "in 2m"
        );
        assert_eq!(relative(now - chrono::TimeDelta::seconds(5), now), "5s ago");
    }
}
