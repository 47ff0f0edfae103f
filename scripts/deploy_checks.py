#!/usr/bin/env python3
"""Checks of the deployment material that need a YAML or JSON parser; run by
scripts/check-deploy.sh, one subcommand per check. Each prints what it found
and exits 1 on a problem."""

import json
import re
import sys
import tomllib
from pathlib import Path

RULE_HEADER = """\
# Generated from deploy/prometheus/alerts.yml by `scripts/check-deploy.sh --update`:
# do not edit by hand (scripts/check-deploy.sh fails when the two differ).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: tokenwarden
  labels:
    app.kubernetes.io/name: tokenwarden
spec:
"""

# Kinds whose schemas come with Kubernetes; anything else is a CRD.
CRD_GROUPS = ("monitoring.coreos.com/",)

problems = []


def problem(msg):
    problems.append(msg)
    print(f"  problem: {msg}")


def load_yaml_docs(path):
    import yaml

    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def duration_seconds(text):
    """'90s', '1m', '1m30s', '2min' -> seconds (the forms used in this repo)."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+)\s*(ms|sec|min|s|m|h)", text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"cannot read duration {text!r}")
    return total


def prometheusrule(alerts):
    """The PrometheusRule: alerts.yml verbatim under `spec:`."""
    body = Path(alerts).read_text()
    indented = "".join(("  " + line) if line.strip() else line for line in body.splitlines(True))
    sys.stdout.write(RULE_HEADER + indented)


def alert_coverage(alerts, tests):
    """Every alert has a test where it fires and one where it stays quiet."""
    names = [r["alert"] for g in load_yaml_docs(alerts)[0]["groups"] for r in g["rules"] if "alert" in r]
    fires, quiet = set(), set()
    for case in load_yaml_docs(tests)[0]["tests"]:
        for t in case.get("alert_rule_test", []):
            (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
    for n in names:
        if n not in fires:
            problem(f"alert {n} has no test where it fires")
        if n not in quiet:
            problem(f"alert {n} has no test where it stays quiet")
    unknown = (fires | quiet) - set(names)
    for n in sorted(unknown):
        problem(f"alerts_test.yml tests {n}, which alerts.yml does not define")
    if not problems:
        print(f"  {len(names)} alerts, each tested firing and quiet")


def metric_names(contract, *files):
    """Every tokenwarden_* name used is one docs/metrics.md defines."""
    defined = set(re.findall(r"`(tokenwarden_[a-z0-9_]+)`", Path(contract).read_text()))
    allowed = set(defined)
    for name in defined:
        if name.endswith("_seconds") and "duration" in name:
            allowed |= {name + s for s in ("_bucket", "_sum", "_count")}
    for f in files:
        for name, star in sorted(set(re.findall(r"\b(tokenwarden_[a-z0-9_]+)(\*?)", Path(f).read_text()))):
            if star or name.endswith("_"):
                # a family written as a prefix: tokenwarden_jobs_*
                if not any(d.startswith(name) for d in defined):
                    problem(f"{f} names {name}*, which matches no metric in docs/metrics.md")
            elif name not in allowed:
                problem(f"{f} uses {name}, which docs/metrics.md does not define")
    if not problems:
        print(f"  {len(defined)} metrics in the contract; every name used in {len(files)} files is one of them")


def grafana(path, rules_out=None):
    """Valid JSON, a datasource variable, a provider variable, no fixed
    datasource. With rules_out, writes every query as a recording rule (the
    variables filled in) for `promtool check rules` to parse."""
    d = json.loads(Path(path).read_text())
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        problem("the dashboard has no `datasource` variable of type datasource")
    if "provider" not in variables:
        problem("the dashboard has no `provider` variable")
    panels = []

    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels", []))

    walk(d.get("panels", []))
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        problem("panel ids are not unique")
    for p in panels:
        if p.get("type") == "row":
            continue
        ds = p.get("datasource", {})
        if ds.get("uid") != "${datasource}":
            problem(f"panel {p.get('title')!r} does not use the datasource variable")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                problem(f"a query of panel {p.get('title')!r} does not use the datasource variable")
            if not t.get("expr"):
                problem(f"a query of panel {p.get('title')!r} has no expression")
    if rules_out:
        import yaml

        exprs = [t["expr"] for p in panels for t in p.get("targets", []) if t.get("expr")]
        filled = [
            e.replace("$__rate_interval", "5m").replace("$job", "tokenwarden").replace("$provider", ".*")
            for e in exprs
        ]
        rules = [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(filled)]
        Path(rules_out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    print(f"  {len(panels)} panels, variables: {', '.join(variables)}")


def rules_match(alerts, rendered):
    """The rendered PrometheusRule's spec equals alerts.yml, parsed."""
    rules = [d for d in load_yaml_docs(rendered) if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        problem(f"{len(rules)} PrometheusRule objects rendered, expected 1")
        return
    if rules[0]["spec"] != load_yaml_docs(alerts)[0]:
        problem("the rendered PrometheusRule's spec differs from alerts.yml")
    else:
        print("  the rendered PrometheusRule's spec equals alerts.yml")


def split_rendered(rendered, extra, core_out, crd_out):
    """Built-in kinds to one YAML stream (for kubernetes-validate), CRD objects
    to JSON (for the prometheus-operator models)."""
    import yaml

    docs = load_yaml_docs(rendered) + load_yaml_docs(extra)
    core = [d for d in docs if not d["apiVersion"].startswith(CRD_GROUPS)]
    crds = [d for d in docs if d["apiVersion"].startswith(CRD_GROUPS)]
    with open(core_out, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    Path(crd_out).write_text(json.dumps(crds))
    kinds = sorted({d["kind"] for d in docs})
    print(f"  {len(docs)} objects ({', '.join(kinds)}): {len(core)} built-in, {len(crds)} custom")


def k8s_policy(rendered, config):
    """What the brief promises about every pod: restricted security, probes,
    resources, and a grace period above shutdown.grace + 10 s."""
    grace = duration_seconds(tomllib.loads(Path(config).read_text()).get("shutdown", {}).get("grace", "60s"))
    deployments = [d for d in load_yaml_docs(rendered) if d["kind"] == "Deployment"]
    if not deployments:
        problem("no Deployment rendered")
    for d in deployments:
        name = d["metadata"]["name"]
        pod = d["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problem(f"{name}: pod runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(f"{name}: pod seccompProfile is not RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problem(f"{name}: a service account token is mounted")
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        if tgp < grace + 10:
            problem(f"{name}: terminationGracePeriodSeconds {tgp} < shutdown.grace {grace:g} s + 10 s")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(f"{where}: readOnlyRootFilesystem is not true")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problem(f"{where}: capabilities do not drop ALL")
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in c.get("resources", {}).get(kind, {}):
                        problem(f"{where}: no {res} {kind[:-1]}")
            if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
                problem(f"{where}: liveness probe is not GET /healthz")
            if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                problem(f"{where}: readiness probe is not GET /readyz")
    if not problems:
        print(f"  {len(deployments)} Deployments: restricted security context, probes, resources, "
              f"grace period >= {grace:g} s + 10 s")


def systemd_timeouts(unit, config):
    """TimeoutStopSec above shutdown.grace; the notify contract."""
    grace = duration_seconds(tomllib.loads(Path(config).read_text()).get("shutdown", {}).get("grace", "60s"))
    settings = {}
    for line in Path(unit).read_text().splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            settings.setdefault(m.group(1), m.group(2))
    stop = duration_seconds(settings.get("TimeoutStopSec", "90s"))
    if stop <= grace:
        problem(f"TimeoutStopSec {stop:g} s is not above shutdown.grace {grace:g} s")
    for key, want in (("Type", "notify"), ("NotifyAccess", "main"), ("WatchdogSec", "30s")):
        if settings.get(key) != want:
            problem(f"{key}={settings.get(key)} in {unit}, expected {want}")
    if not problems:
        print(f"  TimeoutStopSec {stop:g} s > shutdown.grace {grace:g} s; Type=notify, watchdog 30 s")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    command = globals()[sys.argv[1].replace("-", "_")]
    command(*sys.argv[2:])
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
