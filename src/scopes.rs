//! Which publishing scopes an account lacks. Each platform's `publish_scopes`
//! (config) lists what posting needs; an entry `a|b` is met by either scope
//! (Google's broad `youtube` scope also allows uploads, Mastodon's `write`
//! covers `write:statuses`). A missing entry is reported under its first
//! name, the narrowest scope the user would have to grant.

/// Granted scopes as platforms write them: a list, but an entry may still be
/// a space- or comma-separated string (LinkedIn uses commas).
pub fn normalize(granted: &[String]) -> Vec<String> {
    let mut out: Vec<String> = granted
        .iter()
        .flat_map(|entry| entry.split([' ', ',']))
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The entries of `required` that no granted scope meets, in config order.
pub fn missing(required: &[String], granted: &[String]) -> Vec<String> {
    let granted = normalize(granted);
    required
        .iter()
        .filter(|entry| {
            !entry
                .split('|')
                .map(str::trim)
                .any(|alternative| granted.iter().any(|g| g == alternative))
        })
        .map(|entry| entry.split('|').next().unwrap_or("").trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn alternatives_and_separators() {
        let required = strings(&["pins:write", "boards:read", "write:statuses|write"]);
        assert_eq!(
            missing(&required, &strings(&["boards:read,pins:read", "write"])),
            strings(&["pins:write"])
        );
        assert_eq!(
            missing(
                &required,
                &strings(&["pins:write boards:read write:statuses"])
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            missing(&required, &[]),
            strings(&["pins:write", "boards:read", "write:statuses"])
        );
        assert!(missing(&[], &strings(&["a"])).is_empty());
    }

    #[test]
    fn scope_names_match_exactly() {
        // A prefix is not the scope: `pins:write` is not `pins:write_secret`.
        assert_eq!(
            missing(
                &strings(&["pins:write"]),
                &strings(&["pins:write_secret", "PINS:WRITE"])
            ),
            strings(&["pins:write"])
        );
    }
}
