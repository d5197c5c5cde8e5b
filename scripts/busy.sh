#!/usr/bin/env bash
# busy.sh N COMMAND...: runs COMMAND while N other processes keep a core
# busy each (a shell busy loop at normal priority, as another tenant's load
# would), and stops them when COMMAND ends, whatever its exit status.
set -euo pipefail
n=$1
shift
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$n"); do
	sh -c 'while :; do :; done' &
	pids+=($!)
done
echo "busy.sh: $n busy loop(s) running (pids ${pids[*]})" >&2
"$@"
