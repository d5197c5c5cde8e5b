#!/usr/bin/env bash
# The web view in a real browser: webui's TestBrowser starts Debian's
# headless Chromium (installed by scripts/deps.sh), loads the fleet, a VM
# and a report page of a store built from the chain vectors, checks what
# they show (the VM names, the migration arrow, the rollback mark, the
# drift range) and saves a PNG screenshot of each into
# $HVMON_SCREENSHOTS (default /tmp/hvmon-ui-shots). A missing Chromium
# fails here (HVMON_REQUIRE_BROWSER=1); plain `go test ./...` skips it.
# Takes about 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
export HVMON_REQUIRE_BROWSER=1
export HVMON_SCREENSHOTS=${HVMON_SCREENSHOTS:-/tmp/hvmon-ui-shots}
mkdir -p "$HVMON_SCREENSHOTS"
go test -count=1 -run '^TestBrowser$' -v ./webui
ls -l "$HVMON_SCREENSHOTS"/*.png
