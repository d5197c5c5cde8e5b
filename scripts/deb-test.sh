#!/usr/bin/env bash
# The Debian package tier (scripts/test.sh runs it; docs/OPERATIONS.md,
# "Installing the Debian package"): builds the package with make deb,
# checks it with lintian, installs it with dpkg -i on this machine, runs
# the installed hvmon (--version, attest and verify a report), checks the
# man pages, completions and the libvirt hook the maintainer scripts
# install when asked (into a temporary hooks directory), installs it again
# over itself (an edited conffile and the hook stay), removes it
# (reports kept), purges it (reports gone) and asserts that nothing it
# installed or made is left in /etc, /usr or /var/lib.
#
# Root. It refuses to run where hvmon is already installed as a package,
# and purges what it installed on any exit. The maintainer scripts start
# no daemon; systemd is touched only when it runs as PID 1.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
for tool in lintian dpkg dpkg-deb; do
	command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done
dpkg -s hvmon >/dev/null 2>&1 && fail "an hvmon package is already installed here; this test would replace it"

# dpkg shares its lock with apt runs of other jobs on this machine: wait
# for it rather than fail.
dpkg_locked() {
	local i out
	for i in $(seq 120); do
		if out=$("$@" 2>&1); then
			printf '%s\n' "$out"
			return 0
		fi
		grep -q 'lock' <<<"$out" || { printf '%s\n' "$out" >&2; return 1; }
		sleep 2
	done
	printf '%s\n' "$out" >&2
	return 1
}

tmp=$(mktemp -d /tmp/hvmon-deb-test.XXXXXX)
installed=""
cleanup() {
	if [ -n "$installed" ] && dpkg -s hvmon >/dev/null 2>&1; then
		echo "deb-test: purging hvmon after a failure"
		HVMON_HOOK_DIR="$tmp/hooks" dpkg_locked dpkg --purge hvmon >/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

start=$(date +%s)
echo "-- internal/cmd/mkdeb (its own module): tidy, vet, tests"
(cd internal/cmd/mkdeb && go mod tidy -diff && go vet ./... && go test -count=1 ./...) || fail "internal/cmd/mkdeb"

echo "-- make deb"
make --no-print-directory deb >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; fail "make deb"; }
deb=$(ls bin/hvmon_*_amd64.deb)
echo "   $deb ($(du -h "$deb" | cut -f1))"

echo "-- lintian (errors and warnings fail; overrides are in contrib/deb/lintian-overrides, each with its reason)"
lintian --pedantic --display-info --fail-on error,warning "$deb" 2>&1 | grep -v '^running with root privileges' || fail "lintian"

# The paths the package ships or its scripts make.
dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's|^\./|/|' -e 's|/$||' | grep -v '^/\?$' | sort >"$tmp/contents"
snapshot() { find /etc /usr /var/lib -xdev 2>/dev/null | sort; }
snapshot >"$tmp/before"

echo "-- dpkg -i with HVMON_INSTALL_HOOK=1 (hooks directory $tmp/hooks)"
# hooks does not exist yet: the install makes it and the removal removes it.
installed=1
HVMON_INSTALL_HOOK=1 HVMON_HOOK_DIR="$tmp/hooks" dpkg_locked dpkg -i "$deb" | sed 's/^/   /'
[ "$(dpkg-query -W -f '${Status}' hvmon)" = "install ok installed" ] || fail "dpkg does not list hvmon as installed"

echo "-- the installed files"
ver=$(hvmon --version)
echo "   $ver"
commit=$(git rev-parse HEAD)
[[ "$ver" == "hvmon "*"(commit $commit"*", go"* ]] || fail "hvmon --version: got '$ver', want the version, commit $commit and the Go version"
[ "$(command -v hvmon)" = /usr/bin/hvmon ] || fail "hvmon runs from $(command -v hvmon), want /usr/bin/hvmon"
[ "$(stat -c %a /var/lib/hvmon)" = 750 ] || fail "/var/lib/hvmon: mode $(stat -c %a /var/lib/hvmon), want 750"
hvmon keygen -o "$tmp/host.key" >/dev/null
head -c 3000000 /dev/zero | tr '\0' 'w' >"$tmp/weights.bin"
root=$(hvmon measure "$tmp/weights.bin" | cut -d' ' -f1)
hvmon attest --key "$tmp/host.key" --region "weights=$tmp/weights.bin" -o "$tmp/report.cose"
hvmon verify --strict --trust "$tmp/host.key.pub" --expect "weights=$root" "$tmp/report.cose" | grep -E "drift|VALID" | sed 's/^/   verify: /'
# And a wrong reference root must fail (--strict: drift is fatal).
bad=$(printf '%s' "$root" | sed 's/^./'"$( [ "${root:0:1}" = 0 ] && echo 1 || echo 0)"'/')
if hvmon verify --strict --trust "$tmp/host.key.pub" --expect "weights=$bad" "$tmp/report.cose" >/dev/null 2>&1; then
	fail "hvmon verify accepted a wrong reference root"
fi
pages=$(ls /usr/share/man/man1/hvmon*.1.gz | wc -l)
[ "$pages" -ge 30 ] || fail "$pages man pages, want one per command"
for page in hvmon hvmon-verify hvmon-daemon hvmon-hook hvmon-hook-install; do
	zcat "/usr/share/man/man1/$page.1.gz" | grep -q '^\.TH' || fail "man page $page is missing or not troff"
done
if command -v man >/dev/null; then
	[ "$(man -w hvmon-verify)" = /usr/share/man/man1/hvmon-verify.1.gz ] || fail "man -w hvmon-verify: $(man -w hvmon-verify 2>&1)"
fi
bash -c 'source /usr/share/bash-completion/completions/hvmon && complete -p hvmon' | grep -q hvmon || fail "bash completion"
grep -q '#compdef hvmon' /usr/share/zsh/vendor-completions/_hvmon || fail "zsh completion"
grep -q 'complete -c hvmon' /usr/share/fish/vendor_completions.d/hvmon.fish || fail "fish completion"
grep -q '^ExecStart=/usr/bin/hvmon daemon' /lib/systemd/system/hvmon.service || fail "the unit does not run /usr/bin/hvmon"
dpkg-query -W -f '${Conffiles}\n' hvmon | grep -q '/etc/hvmon/hvmon.hcl' || fail "/etc/hvmon/hvmon.hcl is not a conffile"
head -n 1 "$tmp/hooks/qemu.d/hvmon" | grep -q '^#!/usr/bin/hvmon-hook ' || fail "HVMON_INSTALL_HOOK=1 did not install the hook: $(cat "$tmp/hooks/qemu.d/hvmon" 2>&1)"
echo "   version, attest/verify, $pages man pages, completions, unit, conffile, hook: ok"

echo "-- dpkg -i again (the upgrade path) keeps an edited conffile and the hook"
echo '# edited by the admin (deb-test)' >>/etc/hvmon/hvmon.hcl
HVMON_HOOK_DIR="$tmp/hooks" dpkg_locked dpkg --force-confold -i "$deb" | sed 's/^/   /'
grep -q '^# edited by the admin (deb-test)$' /etc/hvmon/hvmon.hcl || fail "the upgrade replaced the edited /etc/hvmon/hvmon.hcl"
[ -f "$tmp/hooks/qemu.d/hvmon" ] || fail "the upgrade removed the hook"

echo "-- dpkg -r keeps the reports"
echo report >/var/lib/hvmon/deb-test-report
HVMON_HOOK_DIR="$tmp/hooks" dpkg_locked dpkg -r hvmon | sed 's/^/   /'
[ -f /var/lib/hvmon/deb-test-report ] || fail "dpkg -r deleted the state directory's reports"
[ ! -e /usr/bin/hvmon ] || fail "dpkg -r left /usr/bin/hvmon"
[ ! -e "$tmp/hooks" ] || fail "dpkg -r left the hook or its directories: $(ls -laR "$tmp/hooks")"

echo "-- dpkg --purge removes the rest"
HVMON_HOOK_DIR="$tmp/hooks" dpkg_locked dpkg --purge hvmon | sed 's/^/   /'
installed=""
snapshot >"$tmp/after"

# Other jobs may install packages or run VMs meanwhile (a libvirt test
# VM's files can carry "hvmon" in their names): what counts is what the
# package shipped or could have made that is new, and anything of its
# paths that existed before and is gone. It could make: its state and
# configuration directories, the hook, systemd enablement, dpkg's records.
made='^(/etc/hvmon|/var/lib/hvmon|/etc/libvirt/hooks/|/etc/systemd/.*hvmon|/var/lib/systemd/.*hvmon|/var/lib/dpkg/info/hvmon\.|/usr/.*hvmon)'
comm -13 "$tmp/before" "$tmp/after" >"$tmp/new"
comm -23 "$tmp/before" "$tmp/after" >"$tmp/gone"
left=$( (grep -Fxf "$tmp/contents" "$tmp/new"; grep -E "$made" "$tmp/new") | sort -u || true)
[ -z "$left" ] || fail "left behind after purge:
$left"
lost=$(grep -Fxf "$tmp/contents" "$tmp/gone" || true)
[ -z "$lost" ] || fail "gone after purge though they were there before:
$lost"
[ ! -e /var/lib/hvmon ] && [ ! -e /etc/hvmon ] || fail "purge left /var/lib/hvmon or /etc/hvmon"
echo "   nothing left behind ($(wc -l <"$tmp/contents") paths shipped; $(wc -l <"$tmp/new") new and $(wc -l <"$tmp/gone") gone paths on the machine from other jobs, none of them the package's)"
echo "-- deb tier passed in $(($(date +%s) - start)) s"
