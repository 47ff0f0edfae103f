//! Configuration layering and validation. `figment::Jail` changes the process
//! environment, so these live in a test binary of their own: one binary, one
//! topic a module.
//!
//! `layering`: defaults, file and environment in order, and errors naming the
//! file; `validation`: every section's values refused naming their key;
//! `secrets`: secrets from files, key specs, a secret given twice;
//! `connectivity`: TLS to PostgreSQL and Redis, and the Redis modes;
//! `numbers_property`: any value for any numeric key; `command_line`: the
//! binary's exit codes.

// figment::Jail closures return figment::Error, whose size is not ours to choose.
#![allow(clippy::result_large_err)]

mod command_line;
mod connectivity;
mod layering;
mod numbers_property;
mod secrets;
mod validation;

use figment::Jail;
use tokenwarden::config::{ConfigError, Settings};

fn load(jail: &Jail, file: Option<&str>) -> Result<Settings, ConfigError> {
    let _ = jail;
    Settings::load(file.map(std::path::Path::new))
}
