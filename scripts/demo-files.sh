#!/usr/bin/env bash
# demo-files.sh walks through hvmon on two files standing in for model
# weights: sign a report, verify it against reference roots, change one byte
# of one file, and watch strict verification fail on that region.
#
# It builds hvmon into a temporary directory and works there; the tree is
# left untouched. It exits 0 only if every step gives the exit code it
# should. Usage: scripts/demo-files.sh (from any directory).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say() { printf '\n== %s\n' "$*"; }

# step WANT CMD...: run CMD, show its output, and stop the demo unless it
# exits with WANT. The output is kept in $out for later checks; with
# quiet=1 it is not shown.
out=
quiet=0
step() {
	local want=$1 got=0
	shift
	printf '$ %s\n' "${*#./}"
	out=$("$@" 2>&1) || got=$?
	if [[ -n $out && $quiet -eq 0 ]]; then
		printf '%s\n' "$out" | sed 's/^/  /'
	fi
	if [[ $got -ne $want ]]; then
		printf 'DEMO FAILED: exit %d, want %d\n' "$got" "$want" >&2
		exit 1
	fi
	printf '  (exit %d, as expected)\n' "$got"
}

# expect_out REGEX: the last step's output must match.
expect_out() {
	if ! grep -Eq -- "$1" <<<"$out"; then
		printf 'DEMO FAILED: output does not match %s\n' "$1" >&2
		exit 1
	fi
}

say "Building hvmon"
go build -o "$work/hvmon" ./cmd/hvmon
cd "$work"
echo "built $work/hvmon"

say "Two small weights files (3 and 2 pages of 4 KiB)"
for i in $(seq 1 600); do printf 'layer-a %04d w ' "$i"; done >weights-a.bin
for i in $(seq 1 400); do printf 'layer-b %04d w ' "$i"; done >weights-b.bin
ls -l weights-a.bin weights-b.bin | awk '{print "  " $5 " bytes  " $NF}'

say "A signing key: private key 0600, public key 0644; the key id is printed"
step 0 ./hvmon keygen -o attester.key

say "Attest: measure both files and sign a report"
step 0 ./hvmon attest --key attester.key --workload demo-llm \
	--region weights-a=weights-a.bin --region weights-b=weights-b.bin -o report-1.cose

say "Verify it; no reference values yet, so only signature and freshness"
step 0 ./hvmon verify --trust attester.key.pub report-1.cose
expect_out '^VALID$'

say "Take the verified roots as reference values (from verify --json, not shown)"
quiet=1 step 0 ./hvmon verify --json --trust attester.key.pub report-1.cose
hash1=$(awk -F'"' '/^  "report_hash":/ {print $4}' <<<"$out")
roots=$(awk -F'"' '/"region_id":/ {id = $4} /"root":/ && id != "" {print id "=" $4; id = ""}' <<<"$out")
expects=()
while read -r r; do expects+=(--expect "$r"); done <<<"$roots"
sed 's/^/  reference: /' <<<"$roots"
[[ ${#expects[@]} -eq 4 ]] || { echo "DEMO FAILED: want 2 roots, got: $roots" >&2; exit 1; }

say "Strict verification against the reference roots"
step 0 ./hvmon verify --strict --trust attester.key.pub "${expects[@]}" report-1.cose
expect_out '^VALID$'

say "Someone changes one byte of weights-b.bin (offset 5000)"
printf 'X' | dd of=weights-b.bin bs=1 seek=5000 conv=notrunc status=none

say "Attest again, chained to the first report (--seq 1 --prev <its hash>)"
step 0 ./hvmon attest --key attester.key --workload demo-llm --seq 1 --prev "$hash1" \
	--region weights-a=weights-a.bin --region weights-b=weights-b.bin -o report-2.cose

say "Without --strict, drift is a warning: still valid, but said so"
step 0 ./hvmon verify --trust attester.key.pub "${expects[@]}" report-2.cose
expect_out '^drift +weights-b +warn'
expect_out '^VALID \(drift: 1 region\(s\)\)$'

say "With --strict, drift fails with exit 5 and names the region"
step 5 ./hvmon verify --strict --trust attester.key.pub "${expects[@]}" report-2.cose
expect_out '^drift +weights-b +fail'
expect_out '^INVALID: region drift in 1 region\(s\): \["weights-b"\]$'

say "What the new report says (decoded, not verified)"
step 0 ./hvmon show report-2.cose
expect_out '^UNVERIFIED'
expect_out "^prev: +$hash1\$"

say "Demo complete: every step gave the expected exit code"
