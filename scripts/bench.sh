#!/usr/bin/env bash
# End-to-end daemon benchmark (see benches/daemon/main.rs for the options), and the
# refresh-engine micro benchmark. The custody soak under faults is scripts/soak.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
. scripts/env.sh
cargo bench --bench daemon -- "$@"
