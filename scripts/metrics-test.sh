#!/usr/bin/env bash
# The dashboards-and-alerts tier (scripts/test.sh runs it; docs/OPERATIONS.md,
# "Dashboards and alerts"):
#   1. promtool check rules, and promtool test rules: every alert of
#      contrib/prometheus/hvmon-alerts.yml fires on series that call for it;
#   2. every PromQL query of contrib/grafana/hvmon-dashboard.json parses
#      (promtool check rules over them as recording rules);
#   3. every hvmon_* metric the rules and the dashboard name is one that
#      hvmon's code defines;
#   4. a real hvmon daemon (a temporary configuration: one vm block whose
#      QEMU is absent, one log block; one libvirt hook event sent to it) and
#      a real hvmon logd serve /metrics on loopback; promtool check metrics
#      lints both scrapes.
# Needs promtool (Debian's prometheus package) and curl; fails without them.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "metrics-test: FAIL: $*" >&2; exit 1; }
for tool in promtool curl; do
	command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done
start=$(date +%s)
tmp=$(mktemp -d /tmp/hvmon-metrics-test.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "-- promtool check rules, promtool test rules"
promtool check rules contrib/prometheus/hvmon-alerts.yml
(cd contrib/prometheus && promtool test rules hvmon-alerts.test.yml)

echo "-- the dashboard's queries parse"
{
	echo "groups:"
	echo "  - name: dashboard"
	echo "    rules:"
	n=0
	# Each "expr" line of the JSON; Grafana's variables replaced by values
	# of the same kind.
	grep -o '"expr": ".*"' contrib/grafana/hvmon-dashboard.json |
		sed -e 's/^"expr": "//' -e 's/"$//' -e 's/\\"/"/g' \
			-e 's/\$__rate_interval/5m/g' -e 's/\$instance/.*/g' -e 's/\$vm/.*/g' |
		while IFS= read -r q; do
			n=$((n + 1))
			printf '      - record: dashboard:query%d\n        expr: %s\n' "$n" "'${q//\'/\'\'}'"
		done
} >"$tmp/dashboard-rules.yml"
queries=$(grep -c 'record:' "$tmp/dashboard-rules.yml")
[ "$queries" -ge 20 ] || fail "found $queries queries in the dashboard, want every panel's"
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null || { promtool check rules "$tmp/dashboard-rules.yml"; fail "a dashboard query does not parse"; }
echo "   $queries queries"

echo "-- the metrics named are hvmon's, and the dashboard shows each of them"
defined=$(grep -rhoE '(Name: |NewDesc\()"hvmon_[a-z_]+"' --include='*.go' --exclude='*_test.go' host logd cmd/hvmon |
	grep -oE 'hvmon_[a-z_]+' | sort -u)
[ "$(echo "$defined" | wc -l)" -ge 20 ] || fail "found only these metric definitions in the code: $defined"
names() { grep -ohE 'hvmon_[a-z_]+' "$@" | sed -E 's/_(bucket|sum|count)$//' | sort -u; }
unknown=$(comm -13 <(echo "$defined") <(names contrib/prometheus/hvmon-alerts.yml contrib/prometheus/hvmon-alerts.test.yml contrib/grafana/hvmon-dashboard.json))
[ -z "$unknown" ] || fail "named but not defined by hvmon: $unknown"
unshown=$(comm -23 <(echo "$defined") <(names contrib/grafana/hvmon-dashboard.json))
[ -z "$unshown" ] || fail "defined by hvmon but not on the dashboard: $unshown"
echo "   $(echo "$defined" | wc -l) metrics, each on the dashboard; the rules name no other"

echo "-- a real daemon's and log server's /metrics, linted by promtool check metrics"
nice -n 19 go build -o "$tmp/hvmon" ./cmd/hvmon
# Free loopback ports: bind port 0 and read what the kernel gave.
cat >"$tmp/port.go" <<'GO'
package main

import (
	"fmt"
	"net"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	l.Close()
}
GO
(cd "$tmp" && go build -o port port.go)
mport=$("$tmp/port") lport=$("$tmp/port") lmport=$("$tmp/port")

"$tmp/hvmon" keygen -o "$tmp/host.key" >/dev/null
"$tmp/hvmon" logd keygen --origin metrics-test.hvmon.local/log --out "$tmp/log" >/dev/null
cp "$tmp/host.key.pub" "$tmp/allowlist.pem"
cat >"$tmp/logd.hcl" <<HCL
origin         = "metrics-test.hvmon.local/log"
key            = "$tmp/log.key"
allowlist      = "$tmp/allowlist.pem"
listen         = "127.0.0.1:$lport"
metrics_listen = "127.0.0.1:$lmport"
posix {
  dir = "$tmp/log-data"
}
HCL
cat >"$tmp/hvmon.hcl" <<HCL
host_name      = "metrics-test"
key            = "$tmp/host.key"
data_dir       = "$tmp/data"
api_socket     = "$tmp/api.sock"
metrics_listen = "127.0.0.1:$mport"
periodic       = "10m"
vm "vm-1" {
  qmp = "$tmp/vm-1.qmp"
}
log "main" {
  url = "http://127.0.0.1:$lport"
  key = "$tmp/log.vkey"
}
HCL
"$tmp/hvmon" logd --config "$tmp/logd.hcl" 2>"$tmp/logd.log" &
pids+=($!)
"$tmp/hvmon" daemon --config "$tmp/hvmon.hcl" 2>"$tmp/daemon.log" &
pids+=($!)

scrape() { # URL OUT: wait up to 30 s for the endpoint
	for _ in $(seq 300); do
		curl -fsS "$1" -o "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$tmp/daemon.log" "$tmp/logd.log" >&2
	fail "no metrics at $1"
}
scrape "http://127.0.0.1:$mport/metrics" "$tmp/daemon.metrics"
scrape "http://127.0.0.1:$lmport/metrics" "$tmp/logd.metrics"
# A libvirt hook event through the daemon's API, so that a counter
# (hvmon_hook_events_total) is in the scrape too.
echo "<domain type='qemu'><name>vm-1</name><uuid>6f1c1d2e-0000-4000-8000-000000000001</uuid></domain>" |
	"$tmp/hvmon" hook --api-socket "$tmp/api.sock" --fail-closed -- vm-1 start begin - ||
	fail "hvmon hook: the daemon did not answer"
scrape "http://127.0.0.1:$mport/metrics" "$tmp/daemon.metrics"
for f in daemon logd; do
	promtool check metrics <"$tmp/$f.metrics" || fail "promtool check metrics: the $f's /metrics"
done
for want in '^hvmon_build_info{' '^hvmon_vms 1$' '^hvmon_vm_connected{vm="vm-1"} 0$' '^hvmon_vm_seconds_since_last_report{vm="vm-1"} ' \
	'^hvmon_vm_periodic_seconds{vm="vm-1"} 600$' '^hvmon_vm_agent_up{vm="vm-1"} 0$' '^hvmon_log_backlog{log="main"} 0$' \
	'^hvmon_hook_events_total{decision="allow",op="start",vm="vm-1"} 1$'; do
	grep -qE "$want" "$tmp/daemon.metrics" || fail "the daemon's /metrics has no line matching $want"
done
for want in '^hvmon_logd_ready 1$' '^hvmon_logd_submissions_total{outcome="logged"} 0$'; do
	grep -qE "$want" "$tmp/logd.metrics" || fail "the log server's /metrics has no line matching $want"
done
echo "   daemon: $(grep -c '^hvmon_' "$tmp/daemon.metrics") hvmon_ samples, log server: $(grep -c '^hvmon_logd' "$tmp/logd.metrics"); both lint clean"
echo "-- metrics tier passed in $(($(date +%s) - start)) s"
