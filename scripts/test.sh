#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and Redis on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.94 or newer (https://rustup.rs)" >&2; exit 1; }
scripts/services.sh
. scripts/env.sh
cargo test --workspace --locked "$@"
