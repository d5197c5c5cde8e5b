#!/usr/bin/env bash
# Installs the Debian packages hvmon's demo and QEMU test tiers need, when
# missing. Needs root only when something is missing.
set -euo pipefail
# ovmf gives the launch package the firmware of its SEV-SNP vectors;
# libvirt-dev builds the libvirt binding (cgo); libvirt-daemon-system and
# libvirt-clients give the integration tier a real libvirtd; iproute2 the
# network namespace of the second libvirt host; curl submits reports to the
# log server (file-only demo, interop test); openssh-client holds the
# interop test witness's key in an ssh-agent; ovmf is the firmware whose
# SEV-SNP launch measurement the launch tests compute; prometheus gives
# promtool, which checks the alerting rules and the daemon's /metrics, and
# lintian checks the Debian package (scripts/metrics-test.sh, deb-test.sh);
# Debian 12 has promtool only in prometheus, which also enables a Prometheus
# server on systemd machines (the tests do not use it).
APT_PACKAGES="qemu-system-x86 qemu-utils linux-image-amd64 busybox-static xz-utils cpio libvirt-dev libvirt-daemon-system libvirt-clients iproute2 curl openssh-client ovmf prometheus lintian"
# The web view's browser test (scripts/webui-browser.sh) drives Debian's Chromium; a font so its screenshots show text.
APT_PACKAGES="$APT_PACKAGES chromium fonts-dejavu-core"
missing=""
for p in $APT_PACKAGES; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "hvmon needs these Debian packages:$missing" >&2
	echo "install them as root: apt-get install$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/tmp/hvmon-apt.log 2>&1 || { cat /tmp/hvmon-apt.log; exit 1; }
