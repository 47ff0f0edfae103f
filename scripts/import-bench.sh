#!/usr/bin/env bash
# Bulk import at scale, with the release binary: N registration lines
# (default 100,000; 0.1 % of them malformed) imported into a fresh schema,
# then imported again. Prints, for each run, the wall time, lines per second
# and peak RSS, checks that exactly the malformed lines were refused, that
# the re-run changed nothing, and drops the schema.
#
#   scripts/import-bench.sh [LINES]     (TOKENWARDEN_BIN: another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

lines="${1:-100000}"
bin="${TOKENWARDEN_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet --bin tokenwarden
  bin=target/release/tokenwarden
fi

# The tests' naming, so a schema left by a killed run is swept by them.
schema="tw_test_$(date +%s)_import"
work=$(mktemp -d)
cleanup() {
  psql "$TOKENWARDEN_TEST_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$TOKENWARDEN_TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -qc "CREATE SCHEMA $schema"
for name in $(env | grep -o '^TOKENWARDEN__[A-Z0-9_]*'); do unset "$name"; done
sep='?'; case "$TOKENWARDEN_TEST_DATABASE_URL" in *\?*) sep='&';; esac
export TOKENWARDEN__DATABASE__URL="${TOKENWARDEN_TEST_DATABASE_URL}${sep}options=-c%20search_path%3D${schema}"
export TOKENWARDEN__CRYPTO__KEYS="bench:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export TOKENWARDEN__LOG__FILTER="warn"
"$bin" migrate >/dev/null

python3 - "$lines" "$work/accounts.ndjson" <<'PY'
import json, random, sys
lines, path = int(sys.argv[1]), sys.argv[2]
random.seed(1)
providers = ["X", "LINKEDIN_PERSON", "YOUTUBE", "PINTEREST", "THREADS", "FACEBOOK_PAGE"]
malformed = [
    lambda i: '{"workspace_id": "ws", "provider": "X", "external_id": ',
    lambda i: json.dumps({"workspace_id": "ws", "provider": "X", "credentials": {"access_token": "t"}}),
    lambda i: json.dumps({"workspace_id": "ws", "provider": "X", "external_id": f"bad-{i}",
                          "credentials": {"access_token": "t", "expires_in": -5}}),
    lambda i: json.dumps({"workspace_id": "ws", "provider": "MYSPACE", "external_id": f"bad-{i}",
                          "credentials": {"access_token": "t"}}),
]
hexdigits = "0123456789abcdef"
with open(path, "w") as out:
    for i in range(1, lines + 1):
        if i % 1000 == 500:
            out.write(malformed[(i // 1000) % len(malformed)](i) + "\n")
            continue
        body = {
            "workspace_id": f"ws-{i % 250}",
            "provider": providers[i % len(providers)],
            "external_id": f"ext-{i}",
            "handle": f"@account{i}",
            "display_name": f"Account {i}",
            "scopes": ["read", "write"],
            "meta": {"source": "bench", "n": i},
            "credentials": {
                "access_token": "".join(random.choices(hexdigits, k=64)),
                "refresh_token": "".join(random.choices(hexdigits, k=64)),
                "expires_in": random.randint(3600, 86400),
            },
        }
        out.write(json.dumps(body) + "\n")
PY
expected_invalid=$(( (lines + 500) / 1000 ))
echo "input: $lines lines ($(du -h "$work/accounts.ndjson" | cut -f1)), $expected_invalid malformed"

for run in first re-run; do
  status=0
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" accounts import "$work/accounts.ndjson" \
    >"$work/out" 2>"$work/err" || status=$?
  read -r seconds rss_kib < <(tail -n 1 "$work/time")
  refused=$(grep -c '^line [0-9]*: ' "$work/err" || true)
  echo "$run: $(cat "$work/out")"
  echo "$run: exit $status, $refused lines refused, wall $seconds s, peak RSS $((rss_kib / 1024)) MiB"
  if [ "$refused" -ne "$expected_invalid" ]; then
    echo "expected exactly $expected_invalid refused lines" >&2; head "$work/err" >&2; exit 1
  fi
done
grep -q " 0 created, 0 reconnected, $(( lines - expected_invalid )) unchanged" "$work/out" \
  || { echo "the re-run changed something" >&2; exit 1; }
accounts=$(psql "$TOKENWARDEN__DATABASE__URL" -tAc "SELECT count(*) FROM social_accounts")
events=$(psql "$TOKENWARDEN__DATABASE__URL" -tAc "SELECT count(*) FROM account_events")
echo "stored: $accounts accounts, $events events"
