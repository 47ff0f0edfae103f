//! The compiled-in `config/default.toml` against the built-in defaults.

use figment::Figment;
use figment::providers::{Format, Toml};

use super::{DEFAULT_TOML, Settings};

#[test]
fn default_toml_matches_the_built_in_defaults() {
    let from_file =
        Settings::from_figment(Figment::new().merge(Toml::string(DEFAULT_TOML))).unwrap();
    let built_in = Settings::from_figment(Figment::new()).unwrap();
    assert_eq!(format!("{from_file:?}"), format!("{built_in:?}"));
}

/// Every key that has a default is written out (and so commented) in
/// `config/default.toml`; secrets are the exception by design.
#[test]
fn default_toml_lists_every_key() {
    let defaults = toml_value(&Settings::default());
    let file: toml::Value = toml::from_str(DEFAULT_TOML).unwrap();
    let mut missing = Vec::new();
    collect_missing("", &defaults, &file, &mut missing);
    assert!(
        missing.is_empty(),
        "keys missing from config/default.toml: {missing:?}"
    );
}

fn toml_value(settings: &Settings) -> toml::Value {
    toml::Value::try_from(settings).unwrap()
}

fn collect_missing(
    prefix: &str,
    want: &toml::Value,
    have: &toml::Value,
    missing: &mut Vec<String>,
) {
    let toml::Value::Table(want) = want else {
        return;
    };
    for (key, value) in want {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match have.get(key) {
            None => missing.push(path),
            Some(have) => collect_missing(&path, value, have, missing),
        }
    }
}
