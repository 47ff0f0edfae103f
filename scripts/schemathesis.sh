#!/usr/bin/env bash
# Fuzzes a running daemon's HTTP API against its own /openapi.json with
# schemathesis (all checks, stateful links, bounded examples). The daemon
# runs the api role against a fresh PostgreSQL schema, a Redis queue name of
# its own and a seeded account; its platforms point at a closed local port,
# so no request leaves the machine. Exits non-zero on any failure.
#
# Env: SCHEMATHESIS_MAX_EXAMPLES (default 100), SCHEMATHESIS_SEED (default 1),
# SCHEMATHESIS_VENV (default target/schemathesis-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

venv="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4.3,<5"
fi

cargo build --locked --quiet --bin tokenwarden
bin=target/debug/tokenwarden

# The tests' naming, so a schema left by a killed run is swept by them.
schema="tw_test_$(date +%s)_schemathesis"
work=$(mktemp -d)
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  psql "$TOKENWARDEN_TEST_DATABASE_URL" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$TOKENWARDEN_TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -qc "CREATE SCHEMA $schema"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
closed=$(free_port)
key="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

for name in $(env | grep -o '^TOKENWARDEN__[A-Z0-9_]*'); do unset "$name"; done
sep='?'; case "$TOKENWARDEN_TEST_DATABASE_URL" in *\?*) sep='&';; esac
export TOKENWARDEN__DATABASE__URL="${TOKENWARDEN_TEST_DATABASE_URL}${sep}options=-c%20search_path%3D${schema}"
export TOKENWARDEN__REDIS__URL="$TOKENWARDEN_TEST_REDIS_URL"
export TOKENWARDEN__REDIS__QUEUE="schemathesis-$schema"
export TOKENWARDEN__CRYPTO__KEYS="st:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export TOKENWARDEN__API__KEYS="$key"
export TOKENWARDEN__API__LISTEN="127.0.0.1:$port"
export TOKENWARDEN__API__FORCE_REFRESH_MIN_INTERVAL="1s"
export TOKENWARDEN__HTTP__REQUEST_TIMEOUT="2s"
export TOKENWARDEN__HTTP__CONNECT_TIMEOUT="1s"
export TOKENWARDEN__LOG__FILTER="warn"
for p in X LINKEDIN_PERSON LINKEDIN_COMPANY FACEBOOK_PAGE INSTAGRAM_FACEBOOK_LOGIN INSTAGRAM_LOGIN \
         THREADS TIKTOK_BUSINESS TIKTOK_PERSONAL YOUTUBE PINTEREST; do
  lower=$(echo "$p" | tr 'A-Z' 'a-z')
  export "TOKENWARDEN__PROVIDERS__${p}__TOKEN_URL=http://127.0.0.1:$closed/$lower/token"
  export "TOKENWARDEN__PROVIDERS__${p}__CLIENT_ID=schemathesis"
  export "TOKENWARDEN__PROVIDERS__${p}__CLIENT_SECRET=schemathesis-secret"
done
export TOKENWARDEN__PROVIDERS__X__REVOKE_URL="http://127.0.0.1:$closed/x/revoke"
# The connect flow on, so its routes are fuzzed past "not configured".
export TOKENWARDEN__CONNECT__PUBLIC_URL="http://127.0.0.1:$port/"
export TOKENWARDEN__CONNECT__ALLOWED_REDIRECTS='["https://app.example/connected"]'

"$bin" migrate >/dev/null
"$bin" run --role api >"$work/daemon.log" 2>&1 &
daemon=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fs "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; echo "schemathesis: the daemon did not start" >&2; exit 1; }
  sleep 0.2
done
curl -fs "$base/readyz" >/dev/null || { cat "$work/daemon.log" >&2; echo "schemathesis: the daemon is not ready" >&2; exit 1; }

# A seeded account, so the id routes answer for a real account too.
seeded=$(curl -fs -X POST "$base/v1/accounts" -H "authorization: Bearer $key" \
  -H 'content-type: application/json' \
  -d '{"workspace_id":"ws_seed","provider":"X","external_id":"seed-1","handle":"@seed",
       "scopes":["tweet.read","tweet.write","offline.access"],
       "credentials":{"access_token":"seed-access","refresh_token":"seed-refresh","expires_in":7200}}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "schemathesis: daemon on $base, seeded account $seeded"

cat >"$work/schemathesis.toml" <<TOML
[[operations]]
include-path = "/v1/accounts/{id}"
include-method = "GET"
parameters = { "path.id" = "$seeded" }

[[operations]]
include-path = "/v1/accounts/{id}/attempts"
parameters = { "path.id" = "$seeded" }
TOML

report=target/schemathesis-report
rm -rf "$report"
# One worker: with two, hypothesis parses lambda sources from two threads at
# once, and Python 3.11's ast module keeps one recursion counter for both
# ("AST constructor recursion depth mismatch", a crash of the tool).
status=0
PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
"$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $key" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --workers 1 \
  --request-timeout 10 \
  --generation-database none \
  --no-color \
  --report ndjson --report-dir "$report" 2>&1 | tee "$work/output.txt" || status=$?

# The figures for the record: requests sent and failures found.
python3 - "$report" <<'PY' || true
import json, pathlib, sys
requests = failures = 0
for path in pathlib.Path(sys.argv[1]).glob("*.ndjson"):
    for line in path.read_text().splitlines():
        body = json.loads(line).get("ScenarioFinished")
        if not body:
            continue
        recorder = body.get("recorder", {})
        requests += len(recorder.get("interactions", {}))
        for checks in recorder.get("checks", {}).values():
            failures += sum(1 for check in checks if check.get("status") == "failure")
print(f"schemathesis: {requests} requests, {failures} failed checks")
PY
if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures found (daemon log follows)" >&2
  tail -n 50 "$work/daemon.log" >&2
fi
exit "$status"
