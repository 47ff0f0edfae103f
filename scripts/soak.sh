#!/usr/bin/env bash
# Custody soak (see benches/custody.rs for the options): 1,000 rotating
# accounts, three daemon processes, database cut, Redis purges, SIGTERM and
# SIGKILL restarts, forced-refresh bursts; prints grants lost by cause and
# provider calls per burst. About ten minutes by default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
. scripts/env.sh
cargo bench --bench custody -- "$@"
