#!/usr/bin/env bash
# Checks everything in deploy/ (see deploy/README.md, "Checks"):
#   - the systemd unit's exposure score (systemd-analyze security --offline) is <= 2.0,
#     and its stop timeout and notify settings match the daemon's contract;
#   - the alert rules load (promtool check rules) and pass their unit tests
#     (promtool test rules), every alert tested firing and quiet;
#   - alerts, dashboard and runbooks use only metric names from docs/metrics.md;
#   - the Grafana dashboard is valid JSON with datasource and provider variables;
#   - the Kubernetes PrometheusRule is alerts.yml verbatim;
#   - the kustomize base renders, validates against the Kubernetes JSON schemas
#     (kubernetes-validate --strict, from PyPI) and the prometheus-operator CRD
#     schemas (@kubernetes-models/prometheus-operator, from npm), and every pod
#     is restricted, probed, resourced and given its shutdown grace.
#
# Tools it lacks are fetched into target/deploy-tools (reused by later runs;
# TOKENWARDEN_DEPLOY_TOOLS moves it): promtool unpacked from Debian's
# prometheus package (apt-get download), kubernetes-validate in a Python venv
# (pip), @kubernetes-models/prometheus-operator in an npm prefix, and, only
# where kubectl is absent, Debian's kubernetes-client for kustomize. After
# that it works offline.
#
#   scripts/check-deploy.sh            run the checks
#   scripts/check-deploy.sh --update   regenerate deploy/kubernetes/prometheusrule.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${TOKENWARDEN_DEPLOY_TOOLS:-$PWD/target/deploy-tools}"
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_MODELS_VERSION=6.0.0
# The oldest Kubernetes the manifests are meant for.
KUBERNETES_VERSION=1.30.0
MAX_EXPOSURE=2.0

ALERTS=deploy/prometheus/alerts.yml
ALERT_TESTS=deploy/prometheus/alerts_test.yml
RULE=deploy/kubernetes/prometheusrule.yaml
UNIT=deploy/systemd/tokenwarden.service
DASHBOARD=deploy/grafana/tokenwarden.json

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { echo "check-deploy: $*" >&2; }
step() { STEP_START=$(date +%s); echo "== $*"; }
done_step() { echo "   ok ($(($(date +%s) - STEP_START)) s)"; PASSED=$((PASSED + 1)); }

APT_UPDATED=""
apt_install() {
  log "installing $*"
  if [ -z "$APT_UPDATED" ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Unpacks a Debian package's files into a directory, without installing it.
unpack_deb() {
  local package=$1 dest=$2 tmp
  [ -n "$APT_UPDATED" ] || { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq; APT_UPDATED=1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q "$package" >/dev/null 2>&1) || { log "apt-get download $package failed"; exit 1; }
  mkdir -p "$dest"
  dpkg-deb -x "$tmp"/"$package"_*.deb "$dest"
  rm -rf "$tmp"
}

if [ "${1:-}" = "--update" ]; then
  python3 scripts/deploy_checks.py prometheusrule "$ALERTS" >"$RULE"
  log "wrote $RULE from $ALERTS"
  exit 0
fi

# --- tools -------------------------------------------------------------------
ensure_tools() {
  # promtool: the one on PATH, else unpacked from Debian's prometheus package
  # into $TOOLS (installing the package would also enable a Prometheus server).
  PROMTOOL=$(command -v promtool || echo "$TOOLS/prometheus/usr/bin/promtool")
  if [ ! -x "$PROMTOOL" ]; then
    log "unpacking promtool from Debian's prometheus package into $TOOLS/prometheus"
    unpack_deb prometheus "$TOOLS/prometheus"
  fi
  command -v systemd-analyze >/dev/null || apt_install systemd
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  mkdir -p "$TOOLS"

  PY="$TOOLS/venv/bin/python"
  if [ ! -f "$TOOLS/venv/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION" ]; then
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $TOOLS/venv"
    python3 -m venv "$TOOLS/venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$TOOLS/venv"; }
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    touch "$TOOLS/venv/.kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
  fi

  NODE_PREFIX="$TOOLS/node"
  if [ ! -f "$NODE_PREFIX/.prometheus-operator-$PROMETHEUS_OPERATOR_MODELS_VERSION" ]; then
    log "installing @kubernetes-models/prometheus-operator $PROMETHEUS_OPERATOR_MODELS_VERSION into $NODE_PREFIX"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --no-save --silent \
      "@kubernetes-models/prometheus-operator@$PROMETHEUS_OPERATOR_MODELS_VERSION" 2>&1 | grep -v nodedir >&2 || true
    [ -d "$NODE_PREFIX/node_modules/@kubernetes-models/prometheus-operator" ] || { log "npm install failed"; exit 1; }
    touch "$NODE_PREFIX/.prometheus-operator-$PROMETHEUS_OPERATOR_MODELS_VERSION"
  fi

  # kustomize: the one built into kubectl; without kubectl, Debian's
  # kubernetes-client unpacked into $TOOLS (not installed system-wide).
  if command -v kubectl >/dev/null; then
    KUBECTL=kubectl
  else
    KUBECTL="$TOOLS/kubernetes-client/usr/bin/kubectl"
    if [ ! -x "$KUBECTL" ]; then
      log "unpacking Debian's kubernetes-client into $TOOLS/kubernetes-client"
      unpack_deb kubernetes-client "$TOOLS/kubernetes-client"
    fi
  fi
}

START=$(date +%s)
PASSED=0
step "tools"
ensure_tools
done_step

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- systemd -------------------------------------------------------------------
step "systemd: exposure of $UNIT (systemd-analyze security --offline=true)"
# --offline (systemd >= 250) reads the unit file given as a path; it needs
# neither a running systemd nor the unit installed, nor the binary present.
systemd-analyze security --offline=true "$UNIT" >"$WORK/security.txt" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' "$WORK/security.txt")
if [ -z "$score" ]; then
  cat "$WORK/security.txt"
  log "systemd-analyze printed no exposure score"; exit 1
fi
grep '^✗' "$WORK/security.txt" | sed 's/^/   /' || true
echo "   exposure $score (limit $MAX_EXPOSURE)"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' \
  || { log "exposure $score is above $MAX_EXPOSURE"; exit 1; }
"$PY" scripts/deploy_checks.py systemd-timeouts "$UNIT" deploy/systemd/tokenwarden.toml
done_step

# --- Prometheus ------------------------------------------------------------------
step "prometheus: promtool check rules, promtool test rules"
"$PROMTOOL" check rules "$ALERTS"
"$PROMTOOL" test rules "$ALERT_TESTS"
echo "   $(grep -c 'alertname:' "$ALERT_TESTS") alert evaluations in $(grep -c '^  - name:' "$ALERT_TESTS") test cases"
"$PY" scripts/deploy_checks.py alert-coverage "$ALERTS" "$ALERT_TESTS"
done_step

step "metric names: alerts, dashboard and runbooks against docs/metrics.md"
"$PY" scripts/deploy_checks.py metric-names docs/metrics.md "$ALERTS" "$ALERT_TESTS" "$DASHBOARD" docs/runbooks/*.md
done_step

step "grafana: $DASHBOARD"
"$PY" scripts/deploy_checks.py grafana "$DASHBOARD" "$WORK/dashboard-queries.yml"
echo "   every query parses:"
"$PROMTOOL" check rules "$WORK/dashboard-queries.yml" | sed 's/^/   /'
done_step

# --- Kubernetes --------------------------------------------------------------------
step "kubernetes: $RULE is $ALERTS verbatim"
python3 scripts/deploy_checks.py prometheusrule "$ALERTS" >"$WORK/rule.yaml"
diff -u "$RULE" "$WORK/rule.yaml" || { log "$RULE is out of date: run scripts/check-deploy.sh --update"; exit 1; }
done_step

step "kubernetes: render the kustomize base ($($KUBECTL version --client 2>/dev/null | grep -i kustomize || echo "$KUBECTL"))"
"$KUBECTL" kustomize deploy/kubernetes >"$WORK/rendered.yaml"
"$PY" scripts/deploy_checks.py rules-match "$ALERTS" "$WORK/rendered.yaml"
"$PY" scripts/deploy_checks.py split-rendered "$WORK/rendered.yaml" deploy/kubernetes/secret.example.yaml \
  "$WORK/core.yaml" "$WORK/crds.json"
done_step

step "kubernetes: built-in kinds against the Kubernetes $KUBERNETES_VERSION schemas (kubernetes-validate --strict)"
if ! "$TOOLS/venv/bin/kubernetes-validate" --strict --kubernetes-version "$KUBERNETES_VERSION" \
  "$WORK/core.yaml" | sed 's/^/   /'; then
  log "schema validation failed"; exit 1
fi
done_step

step "kubernetes: ServiceMonitor and PrometheusRule against the prometheus-operator CRD schemas"
node scripts/validate-crds.mjs "$NODE_PREFIX" "$WORK/crds.json"
done_step

step "kubernetes: pod security, probes, resources, grace period"
"$PY" scripts/deploy_checks.py k8s-policy "$WORK/rendered.yaml" deploy/kubernetes/tokenwarden.toml
done_step

echo "check-deploy: all $PASSED steps passed in $(($(date +%s) - START)) s"
