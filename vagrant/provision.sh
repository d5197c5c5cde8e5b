#!/usr/bin/env bash
# Provisions the Vagrant test host: Go, hvmon's Debian packages, and a
# check that KVM works in the VM. Runs as root, once, from the Vagrantfile.
set -euo pipefail

GO_VERSION=${GO_VERSION:?}
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl git make gcc libc6-dev pkg-config cloud-guest-utils

# The box's disk is small; grow the root file system into the larger disk.
growpart /dev/vda 1 >/dev/null 2>&1 || true
resize2fs /dev/vda1 >/dev/null 2>&1 || true

# Go, from go.dev, checked against the published SHA-256.
if ! /usr/local/go/bin/go version 2>/dev/null | grep -q "go${GO_VERSION} "; then
	tgz="go${GO_VERSION}.linux-amd64.tar.gz"
	curl -fsSL -o "/tmp/$tgz" "https://dl.google.com/go/$tgz"
	echo "$(curl -fsSL "https://dl.google.com/go/$tgz.sha256")  /tmp/$tgz" | sha256sum -c -
	rm -rf /usr/local/go
	tar -C /usr/local -xzf "/tmp/$tgz"
	rm "/tmp/$tgz"
fi
ln -sf /usr/local/go/bin/go /usr/local/bin/go
ln -sf /usr/local/go/bin/gofmt /usr/local/bin/gofmt

# hvmon's own list of what its tests need (QEMU, libvirt, a kernel, ...).
/home/vagrant/hvmon/scripts/deps.sh

# The libvirt tier runs its own libvirtd (as root, with hvmon's hook
# installed before it starts) and refuses to run next to another one: keep
# the packaged daemons stopped.
systemctl disable --now libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket \
	virtlogd.service virtlogd.socket virtlogd-admin.socket >/dev/null 2>&1 || true

# KVM: present, and usable by the vagrant user for the unprivileged tiers.
if [ -e /dev/kvm ]; then
	adduser vagrant kvm >/dev/null
	adduser vagrant libvirt >/dev/null 2>&1 || true
	echo "KVM: /dev/kvm is there; the QEMU tiers try it and fall back to TCG if it does not run guests."
else
	echo "KVM: no /dev/kvm in the VM. Turn on nested virtualisation on the host (README.md); the tiers will run under TCG." >&2
fi
echo "Provisioned. Run: vagrant ssh -c 'cd hvmon && sudo make test'"
