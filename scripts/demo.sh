#!/usr/bin/env bash
# Runs the demo: refreshes a few hundred accounts live against fake platforms.
# Extra arguments go to `tokenwarden demo` (try --help, --duration 90s).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.94 or newer (https://rustup.rs)" >&2; exit 1; }
scripts/services.sh
. scripts/env.sh
cargo build --quiet --bin tokenwarden
exec target/debug/tokenwarden demo "$@"
