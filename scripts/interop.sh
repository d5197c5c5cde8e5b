#!/usr/bin/env bash
# interop.sh: hvmon's transparency log checked by C2SP implementations that
# hvmon did not write (filippo.io/torchwood).
#
# It runs hvmon logd (POSIX storage, ML-DSA-44 checkpoint key, 1 s
# checkpoints) with torchwood's litewitness as its witness (quorum 1),
# submits signed reports in two rounds, keeps the first round's checkpoint,
# and then:
#   - tlogcheck (integration/interop/torchwood, built on torchwood only, its
#     own tests run first)
#     verifies the checkpoint under the log + witness policy, every proof
#     (also the one answered to a resubmission), every entry of the tiles
#     and over HTTP, consistency from the first checkpoint to the last, and
#     that tampered proofs are refused; given a report the log lacks, it
#     must fail;
#   - hvmon verify --log-key --witness-key --quorum 1 --require-log checks
#     every report, and a report against another report's proof is refused;
#   - hvmon log consistency checks the first checkpoint against the last.
#
# torchwood needs a newer Go than hvmon: GOTOOLCHAIN=$TOOLCHAIN is set only
# in the sub-shell that builds tlogcheck, litewitness and witnessctl (the go
# command fetches that toolchain from the module proxy). litewitness and
# witnessctl are cached in ${HVMON_TOOLS:-~/.cache/hvmon-tools}. hvmon
# itself is built with the Go on the PATH.
#
# Needs openssh-client (the witness's key lives in an ssh-agent) and curl;
# as root it installs them when missing. Everything else is in a temporary
# directory; every process it starts is stopped by its PID on exit. Exits
# non-zero, saying which step failed, when any check fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

TORCHWOOD_VERSION=v0.10.0
TOOLCHAIN=go1.27.3
tools=${HVMON_TOOLS:-$HOME/.cache/hvmon-tools}/torchwood-$TORCHWOOD_VERSION
origin=interop.hvmon.dev/log
witness_name=interop.hvmon.dev/witness

say() { printf '\n== %s\n' "$*"; }
die() { printf 'interop: FAILED: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d /tmp/hvmon-interop.XXXXXX)
pids=()
cleanup() {
	local rc=$? pid i
	# Stop in reverse order of start, each by its PID.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		kill "$pid" 2>/dev/null || continue
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "interop: process $pid did not stop in 10 s; killing it" >&2
			kill -9 "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [ "$rc" -ne 0 ]; then
		for f in "$work"/*.log; do
			[ -s "$f" ] || continue
			echo "--- $(basename "$f") (last 30 lines)" >&2
			tail -n 30 "$f" >&2
		done
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port nothing listens on now, below the
# kernel's ephemeral range (where a client's connection may hold it).
free_port() {
	local p low=32768
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	[ "$low" -gt 2024 ] || die "ephemeral ports start at $low: no room for a fixed port below"
	for _ in $(seq 50); do
		p=$((1024 + RANDOM % (low - 1024)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free loopback port found"
}

# wait_http URL PID NAME: wait up to 30 s until URL answers 200, while PID
# runs.
wait_http() {
	local url=$1 pid=$2 name=$3
	for _ in $(seq 150); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] && return 0
		kill -0 "$pid" 2>/dev/null || die "$name exited; see its log above"
		sleep 0.2
	done
	die "$name did not answer at $url in 30 s"
}

say "Packages"
missing=
command -v curl >/dev/null || missing="$missing curl"
for c in ssh-keygen ssh-agent ssh-add; do
	command -v "$c" >/dev/null || { missing="$missing openssh-client"; break; }
done
if [ -n "$missing" ]; then
	[ "$(id -u)" = 0 ] || die "needs:$missing (install as root: apt-get install$missing)"
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >"$work/apt.log" 2>&1
fi
echo "curl, ssh-keygen, ssh-agent, ssh-add: present"

say "torchwood $TORCHWOOD_VERSION tools under $TOOLCHAIN (litewitness, witnessctl, tlogcheck)"
start=$SECONDS
(
	export GOTOOLCHAIN=$TOOLCHAIN
	if [ ! -x "$tools/litewitness" ] || [ ! -x "$tools/witnessctl" ]; then
		echo "building litewitness and witnessctl into $tools (a few minutes the first time)"
		mkdir -p "$tools"
		GOBIN=$tools nice -n 19 go install \
			"filippo.io/torchwood/cmd/litewitness@$TORCHWOOD_VERSION" \
			"filippo.io/torchwood/cmd/witnessctl@$TORCHWOOD_VERSION"
	fi
	cd "$repo/integration/interop/torchwood"
	# The checker's own module: tidy, vetted, its tests (a log it writes
	# itself, with failures it must report) green, then built.
	go mod tidy -diff
	nice -n 19 go vet ./...
	nice -n 19 go test -count=1 ./... >"$work/tlogcheck-test.log" 2>&1 || { cat "$work/tlogcheck-test.log"; exit 1; }
	tail -n 1 "$work/tlogcheck-test.log"
	nice -n 19 go build -o "$work/tlogcheck" ./tlogcheck
	echo "$(go version | cut -d' ' -f3): tools ready"
) || die "building the torchwood tools"
echo "took $((SECONDS - start)) s"

say "hvmon (with $(go version | cut -d' ' -f3))"
start=$SECONDS
nice -n 19 go build -o "$work/hvmon" ./cmd/hvmon || die "building hvmon"
echo "took $((SECONDS - start)) s"
hvmon=$work/hvmon
cd "$work"

say "Keys: the log's ML-DSA-44 key, a host key, the witness's Ed25519 key"
"$hvmon" logd keygen --origin "$origin" --out log >/dev/null || die "hvmon logd keygen"
echo "log:     $(cut -c1-60 log.vkey)..."
"$hvmon" keygen -o host.key >/dev/null 2>&1 || die "hvmon keygen"
cp host.key.pub allowlist.pem
ssh-keygen -q -t ed25519 -N '' -C '' -f witness.sshkey || die "ssh-keygen"
fingerprint=$(ssh-keygen -l -E sha256 -f witness.sshkey.pub | awk '{print $2}')
echo "witness: ssh key $fingerprint"

say "litewitness, its key in an ssh-agent, told about the log"
ssh-agent -D -a "$work/agent.sock" >agent.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S agent.sock ] && break; sleep 0.1; done
[ -S agent.sock ] || die "ssh-agent did not create its socket"
SSH_AUTH_SOCK=$work/agent.sock ssh-add -q witness.sshkey 2>/dev/null || die "ssh-add"
"$tools/witnessctl" add-log -db witness.db -origin "$origin" >>witnessctl.log 2>&1 || die "witnessctl add-log"
"$tools/witnessctl" add-key -db witness.db -origin "$origin" -key "$(cat log.vkey)" >>witnessctl.log 2>&1 ||
	die "witnessctl add-key"
echo "witnessctl: log $origin and its key added"
wport=$(free_port)
nice -n 19 "$tools/litewitness" -db witness.db -name "$witness_name" -key "$fingerprint" \
	-ssh-agent "$work/agent.sock" -listen "127.0.0.1:$wport" >litewitness.log 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$wport/" "${pids[-1]}" litewitness
witness_vkey=$(sed -n 's/.*msg="verifier key" vkey=\([^ ]*\).*/\1/p' litewitness.log | head -n 1)
[ -n "$witness_vkey" ] || die "no verifier key in litewitness's log"
echo "$witness_vkey" >witness.vkey
echo "witness: $witness_vkey"

say "hvmon logd: POSIX storage, witness litewitness, quorum 1, 1 s checkpoints"
lport=$(free_port)
url=http://127.0.0.1:$lport
cat >logd.hcl <<EOF
origin              = "$origin"
key                 = "$work/log.key"
allowlist           = "$work/allowlist.pem"
listen              = "127.0.0.1:$lport"
checkpoint_interval = "1s"
posix {
  dir = "$work/log"
}
witness "litewitness" {
  vkey = "$witness_vkey"
  url  = "http://127.0.0.1:$wport"
}
witness_quorum = 1
EOF
nice -n 19 "$hvmon" logd --config logd.hcl --log-level info >logd.log 2>&1 &
pids+=($!)
wait_http "$url/healthz" "${pids[-1]}" "hvmon logd"
echo "logd: $url"

# submit FIRST LAST: attest reports/rNNN.cose for NNN in FIRST..LAST (signed
# by the host key, one region of its own), post them, 64 at a time, and keep
# each answer, a tlog-proof, as reports/rNNN.proof.
mkdir -p reports data
submit() {
	local names n
	names=$(seq -f 'r%03g' "$1" "$2")
	for n in $names; do
		head -c 8192 /dev/urandom >"data/$n.bin"
	done
	export hvmon
	# shellcheck disable=SC2016
	xargs -P 2 -I{} sh -c '"$hvmon" attest --key host.key --workload "interop-$1" --ttl 1h \
		--region "disk=data/$1.bin" -o "reports/$1.cose" || { echo "hvmon attest $1 failed" >&2; exit 1; }' _ {} \
		<<<"$names" || die "attesting reports"
	# shellcheck disable=SC2016
	xargs -P 64 -I{} sh -c 'curl -sS --fail-with-body --max-time 60 -X POST --data-binary "@reports/$1.cose" \
		-D "reports/$1.headers" -o "reports/$1.proof" "$0/v1/add" ||
		{ echo "POST /v1/add of $1 failed: $(cat "reports/$1.proof" 2>/dev/null)" >&2; exit 1; }' "$url" {} \
		<<<"$names" || die "submitting reports"
	for n in $names; do
		index "reports/$n.headers" >/dev/null
	done
	echo "reports $(head -n 1 <<<"$names")..$(tail -n 1 <<<"$names") logged: $(wc -w <<<"$names") proofs kept"
}

# index HEADERS prints the Hvmon-Log-Index of a POST /v1/add answer.
index() {
	local i
	i=$(sed -n 's/^Hvmon-Log-Index: \([0-9]*\).*/\1/Ip' "$1")
	[ -n "$i" ] || die "$1: no Hvmon-Log-Index header"
	echo "$i"
}

say "Round 1: reports 1 to 3"
start=$SECONDS
submit 1 3
curl -sS --fail "$url/checkpoint" -o checkpoint.round1 || die "GET /checkpoint"
echo "first checkpoint kept: size $(sed -n 2p checkpoint.round1)"

# Round 2 takes the log past 256 entries: a full tile and entry bundle
# beside partial ones, and a second tile level.
say "Round 2: reports 4 to 300, and report 1 again (same index expected)"
submit 4 300
want=$(index reports/r001.headers)
curl -sS --fail-with-body -X POST --data-binary @reports/r001.cose -D dup.headers -o dup.proof "$url/v1/add" ||
	die "resubmitting r001: $(cat dup.proof)"
got=$(index dup.headers)
grep -qi '^Hvmon-Log-Duplicate: true' dup.headers || die "r001 resubmitted: not marked as a duplicate"
[ "$got" = "$want" ] || die "r001 resubmitted: index $got, first logged at $want"
echo "r001 again: index $got, duplicate"
mkdir again
cp reports/r001.cose again/r001-again.cose
cp dup.proof again/r001-again.proof
echo "submissions took $((SECONDS - start)) s"
size=$(sed -n 2p log/checkpoint)
[ "$size" = 300 ] || die "the log's checkpoint has size $size, want 300"

say "torchwood verifies hvmon's log (tlogcheck)"
# One line per check; of the 301 proof lines that pass, three are shown
# and the rest counted (a failing one is shown).
rc=0
"$work/tlogcheck" -log log -log-key log.vkey -witness-key witness.vkey -quorum 1 \
	-old checkpoint.round1 -url "$url" reports/*.cose again/r001-again.cose >tlogcheck.out 2>&1 || rc=$?
awk '/^ok    proof / { if (++n <= 3) print; next }
	n > 3 && !told { printf "...   %d proof lines ok in all\n", n; told = 1 }
	{ print }' tlogcheck.out
[ "$rc" = 0 ] || die "tlogcheck: torchwood refused hvmon's log (lines marked FAIL above)"

say "tlogcheck fails when the log lacks a report"
mkdir extra
"$hvmon" attest --key host.key --workload interop-extra --ttl 1h --region disk=data/r001.bin \
	-o extra/unlogged.cose || die "hvmon attest unlogged"
cp reports/r001.proof extra/unlogged.proof
rc=0
"$work/tlogcheck" -log log -log-key log.vkey -witness-key witness.vkey -quorum 1 \
	reports/*.cose extra/unlogged.cose >tlogcheck.out 2>&1 || rc=$?
grep -E '^(FAIL|tlogcheck:)' tlogcheck.out || true
[ "$rc" = 1 ] || { cat tlogcheck.out; die "tlogcheck with an unlogged report: exit $rc, want 1"; }
grep -q '^FAIL  proof unlogged:' tlogcheck.out || die "tlogcheck did not name the unlogged report's proof"
grep -q '^FAIL  entries: report unlogged is not in the log' tlogcheck.out ||
	die "tlogcheck did not name the report missing from the log"

say "hvmon verifies the same reports and proofs"
n=0
for r in reports/*.cose; do
	"$hvmon" verify --trust host.key.pub --log-key log.vkey --witness-key witness.vkey --quorum 1 \
		--require-log "$r" >verify.out 2>&1 || { cat verify.out; die "hvmon verify --require-log $r"; }
	n=$((n + 1))
	if [ "$n" -le 3 ]; then printf '%s: %s\n' "$(basename "$r")" "$(grep '^log ' verify.out)"; fi
done
echo "... $n reports verified, each with its proof (--require-log, witness quorum 1)"
rc=0
"$hvmon" verify --trust host.key.pub --log-key log.vkey --witness-key witness.vkey --quorum 1 \
	--require-log --proof reports/r002.proof reports/r001.cose >verify.out 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat verify.out; die "hvmon verify of r001 with r002's proof: exit $rc, want 3"; }
echo "r001.cose with r002.proof: refused, exit 3 ($(tail -n 1 verify.out))"

say "hvmon log consistency: the first checkpoint against the last"
"$hvmon" log consistency --log-key log.vkey --witness-key witness.vkey --quorum 1 \
	checkpoint.round1 log/checkpoint --tlog "$url" --out consistency.proof | sed 's/^/--tlog URL: /' ||
	die "hvmon log consistency --tlog $url"
"$hvmon" log consistency --log-key log.vkey --witness-key witness.vkey --quorum 1 \
	checkpoint.round1 log/checkpoint --proof-file consistency.proof | sed 's/^/--proof-file: /' ||
	die "hvmon log consistency --proof-file"

say "Interop passed: torchwood and hvmon agree on every checkpoint, proof and entry"
