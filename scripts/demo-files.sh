#!/usr/bin/env bash
# demo-files.sh walks through hvmon on two files standing in for model
# weights: sign a report, verify it against reference roots, change one byte
# of one file, and watch strict verification fail on that region. Then it
# runs a transparency log (hvmon logd on loopback, tiles in a directory),
# submits the reports, verifies their inclusion proofs offline, and runs the
# log monitor, which names a report kept out of the log.
#
# It builds hvmon into a temporary directory and works there; the tree is
# left untouched. It exits 0 only if every step gives the exit code it
# should. It needs curl for the log's HTTP submissions. Usage:
# scripts/demo-files.sh (from any directory).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
logd_pid=
cleanup() {
	# Only the log server this script started, by its PID.
	if [[ -n $logd_pid ]]; then
		kill "$logd_pid" 2>/dev/null || true
		wait "$logd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
command -v curl >/dev/null || { echo "DEMO FAILED: the log part needs curl (apt-get install curl)" >&2; exit 1; }

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

say "A transparency log: its ML-DSA-44 key (the .vkey is what verifiers pin)"
step 0 ./hvmon logd keygen --origin files.demo.hvmon.dev/log --out log

say "hvmon logd on loopback: POSIX tiles in log/, reports of attester.key.pub only"
# A free port: try a few at random; a taken one makes logd exit at once.
for try in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 40000))
	cat >logd.hcl <<EOF
origin = "files.demo.hvmon.dev/log"
key = "log.key"
allowlist = "attester.key.pub"
listen = "127.0.0.1:$port"
checkpoint_interval = "200ms"
posix {
  dir = "log"
}
EOF
	./hvmon logd --config logd.hcl >logd.out 2>&1 &
	logd_pid=$!
	for i in $(seq 1 100); do
		[[ $(curl -s "http://127.0.0.1:$port/healthz" || true) == ready ]] && break 2
		kill -0 "$logd_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$logd_pid" 2>/dev/null || true
	wait "$logd_pid" 2>/dev/null || true
	logd_pid=
done
[[ -n $logd_pid ]] || { cat logd.out >&2; echo "DEMO FAILED: hvmon logd did not start" >&2; exit 1; }
echo "  listening on 127.0.0.1:$port (PID $logd_pid)"

# submit NAME [PROOF]: POST NAME.cose to the log; its tlog-proof goes to
# PROOF (default NAME.proof) and the log's answer headers are shown (and
# kept in $out).
submit() {
	local proof=${2:-$1.proof}
	printf '$ curl --data-binary @%s.cose http://127.0.0.1:%s/v1/add -o %s\n' "$1" "$port" "$proof"
	out=$(curl -sS -f -D - -o "$proof" --data-binary @"$1.cose" "http://127.0.0.1:$port/v1/add" | tr -d '\r' | grep -i '^hvmon-log-')
	printf '%s\n' "$out" | sed 's/^/  /'
}

say "Submit both reports: the log answers once each is in a published checkpoint, with its proof"
submit report-1
expect_out '^Hvmon-Log-Index: 0$'
submit report-2
expect_out '^Hvmon-Log-Index: 1$'


say "Verify offline with the log key: the proof beside the report (report-1.proof) is found and checked"
step 0 ./hvmon verify --trust attester.key.pub --log-key log.vkey --require-log report-1.cose
expect_out '^log +files\.demo\.hvmon\.dev/log +ok +index 0 of tree size'

say "Another report's proof does not prove this one: with --require-log that is exit 3"
step 3 ./hvmon verify --trust attester.key.pub --log-key log.vkey --require-log --proof report-1.proof report-2.cose
expect_out '^log +files\.demo\.hvmon\.dev/log +fail +report-1\.proof: entry is not included'

say "The two proofs' checkpoints are consistent: the log only grew from one to the other"
step 0 ./hvmon log consistency --log-key log.vkey --tlog log report-1.proof report-2.proof
expect_out 'size 1 is a prefix of size 2'

say "The same bytes again get the same index (the log deduplicates)"
submit report-1 report-1.again.proof
expect_out '^Hvmon-Log-Duplicate: true$'
expect_out '^Hvmon-Log-Index: 0$'

say "The log monitor: checkpoint, entries, and the chain of reports in the log"
step 0 ./hvmon log audit --tlog log --log-key log.vkey --trust attester.key.pub --state audit.state
expect_out '^log\.consistency +affirming +consistent'
expect_out '^VERDICT: affirming'

say "Two more reports; the first (seq 2) is kept out of the log, the second (seq 3) is logged"
quiet=1 step 0 ./hvmon verify --json --trust attester.key.pub report-2.cose
hash2=$(awk -F'"' '/^  "report_hash":/ {print $4}' <<<"$out")
step 0 ./hvmon attest --key attester.key --workload demo-llm --seq 2 --prev "$hash2" \
	--region weights-a=weights-a.bin --region weights-b=weights-b.bin -o report-3.cose
quiet=1 step 0 ./hvmon verify --json --trust attester.key.pub report-3.cose
hash3=$(awk -F'"' '/^  "report_hash":/ {print $4}' <<<"$out")
step 0 ./hvmon attest --key attester.key --workload demo-llm --seq 3 --prev "$hash3" \
	--region weights-a=weights-a.bin --region weights-b=weights-b.bin -o report-4.cose
submit report-4
expect_out '^Hvmon-Log-Index: 2$'

say "The monitor's next run: the log grew consistently, and the withheld report is a gap (exit 5)"
step 5 ./hvmon log audit --tlog log --log-key log.vkey --trust attester.key.pub --state audit.state
expect_out '^log\.consistency +affirming +consistent +size 3 extends size 2'
expect_out '^chain\.host +entry-2 +contraindicated +gap'

say "Demo complete: every step gave the expected exit code"
