# The README's two commands are `make demo` and `make test`.
GO ?= go

.PHONY: all build deb demo demo-files test test-loaded bench bench-latency bench-migration bench-log vectors clean

all: build

# hvmon --version names the version and commit they were built from.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS = -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# hvmon with cgo (the libvirt watcher needs libvirt-dev); hvmon-hook, the
# small libvirt hook, static (it starts faster without the dynamic loader).
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/hvmon ./cmd/hvmon
	CGO_ENABLED=0 $(GO) build -o bin/hvmon-hook ./cmd/hvmon-hook

# The Debian package bin/hvmon_VERSION_amd64.deb (docs/OPERATIONS.md,
# "Installing the Debian package"): hvmon built as in build (cgo, the same
# version and commit) but stripped, position-independent and bind-now
# (Debian's hardening), hvmon-hook, the systemd unit with /usr/bin paths,
# the example configuration as a conffile, a man page per command and
# bash, zsh and fish completions generated from the CLI, and the docs.
# internal/cmd/mkdeb (its own module: nfpm) writes the package;
# SOURCE_DATE_EPOCH, the commit's time, makes a rebuild identical.
DEB_GEN = bin/deb
deb: export SOURCE_DATE_EPOCH = $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
deb:
	rm -rf $(DEB_GEN) bin/hvmon_*.deb
	mkdir -p $(DEB_GEN)/man $(DEB_GEN)/completion $(DEB_GEN)/doc $(DEB_GEN)/examples
	$(GO) build -trimpath -buildmode=pie -ldflags "$(LDFLAGS) -s -w -extldflags '-Wl,-z,relro,-z,now'" -o $(DEB_GEN)/hvmon ./cmd/hvmon
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(DEB_GEN)/hvmon-hook ./cmd/hvmon-hook
	cd internal/cmd/mkdeb && $(GO) build -o $(CURDIR)/bin/mkdeb .
	$(DEB_GEN)/hvmon man --dir $(DEB_GEN)/man
	gzip -9n $(DEB_GEN)/man/*.1
	$(DEB_GEN)/hvmon completion bash >$(DEB_GEN)/completion/hvmon.bash
	$(DEB_GEN)/hvmon completion zsh >$(DEB_GEN)/completion/_hvmon
	$(DEB_GEN)/hvmon completion fish >$(DEB_GEN)/completion/hvmon.fish
	sed -e 's|/usr/local/bin/hvmon|/usr/bin/hvmon|g' -e 's|doc/hvmon/OPERATIONS.md|doc/hvmon/OPERATIONS.md.gz|' -e '/^# Install: cp /,/enable --now hvmon$$/d' \
		contrib/hvmon.service >$(DEB_GEN)/hvmon.service
	cp README.md docs/*.md $(DEB_GEN)/doc/
	gzip -9n $(DEB_GEN)/doc/*.md
	cp contrib/logd.hcl contrib/policy.hcl $(DEB_GEN)/examples/
	bin/mkdeb -config contrib/deb/nfpm.yaml -gen $(DEB_GEN) -out bin \
		-describe "$(VERSION)" -date "$$(git log -1 --format=%cs)"

# The main job: a real VM under QEMU through boot, periodic, live
# migration, snapshot, tampering, on-demand, restore and shutdown, with one
# signed report per event, all verified. Installs the packages it needs
# first when run as root. The file-only flow is `make demo-files`.
demo:
	scripts/deps.sh
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/hvmon ./cmd/hvmon
	bin/hvmon demo --out out/demo

demo-files:
	scripts/demo-files.sh

# Every test tier; installs what the tests need first.
test:
	scripts/test.sh

# The same, with every core kept busy by another process for the whole
# run, as on a loaded hypervisor: one busy loop per core (BUSY, default
# nproc), stopped when the tests end.
test-loaded:
	scripts/busy.sh $${BUSY:-$$(nproc)} scripts/test.sh

# Sign and verify next to raw ML-DSA-65 in the same run; then the
# measurement engine next to the standard library's SHA3-256 and OpenSSL's
# in the same run, as a benchstat table and the ratios with their targets.
BENCHSTAT ?= $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
BENCH_COUNT ?= 6
bench:
	$(GO) test -run '^$$' -bench 'Sign|Verify' -benchmem -count 5 ./attest
	mkdir -p bin
	$(GO) test -run '^$$' -bench '^Benchmark(SHA3Stream|PageTree|PageTreeSection|MeasureFull|Update1Percent)$$' \
		-benchmem -count $(BENCH_COUNT) -timeout 60m ./measure > bin/bench-measure.txt
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) -timeout 60m ./measure/proc >> bin/bench-measure.txt
	$(BENCHSTAT) bin/bench-measure.txt
	@echo
	$(GO) run ./measure/internal/benchratio bin/bench-measure.txt
	@echo
	@echo "OpenSSL, same run (bytes/s in thousands, 16 KiB blocks):"
	@openssl speed -evp sha3-256 -seconds 3 -bytes 16384 2>/dev/null | tail -n 2
	@echo
	@echo "libvirt hook run time, /bin/true in the same run:"
	$(GO) test -run '^$$' -bench HookProcess -benchtime 200x ./cmd/hvmon/

# Event -> stored signed report with a real guest under QEMU: p50, p99 and
# max over 300 events next to the agent's attest round trip alone (the
# baseline, same run), with each step (docs/OPERATIONS.md, "Event latency").
# LATENCY_GAP is the pause between two events.
LATENCY_N ?= 300
LATENCY_GAP ?= 0s
bench-latency:
	$(GO) test -tags integration -v -run '^$$' -bench '^BenchmarkEventLatency$$' -benchtime $(LATENCY_N)x \
		-timeout 60m ./integration/ -args -latency.gap $(LATENCY_GAP)

# Live migrations of the test guest with every core busy (busy loops the
# benchmark starts and stops), under QMP and under libvirt (two libvirt
# hosts): how many migrate-out and migrate-in reports carry guest evidence,
# and QEMU's downtime with hvmon following beside the same run without.
# Root, QEMU and libvirt (scripts/deps.sh installs them). Only one libvirtd
# tier may run at a time, hence the lock around the libvirt half.
MIGRATIONS ?= 20
BENCH_MIGRATION = $(GO) test -tags integration -count=1 -run '^$$' -benchtime 1x -timeout 120m
bench-migration:
	scripts/deps.sh
	$(BENCH_MIGRATION) -bench 'MigrationUnderLoad/qmp' ./integration/ -migrations $(MIGRATIONS)
	flock /tmp/hvmon-libvirtd.lock $(BENCH_MIGRATION) -bench 'MigrationUnderLoad/libvirt' ./integration/ -migrations $(MIGRATIONS)

# The transparency log's figures, side by side in one run: sustained
# submissions/s, submit -> published proof p50/p99 and bytes stored per
# report with LOGBENCH_CLIENTS concurrent HTTP clients (1 s checkpoint
# interval), on POSIX storage and on MariaDB + S3 (two log servers, a
# local stack from scripts/logstack.sh, stopped by PID afterwards); then
# proof verification next to a bare ML-DSA-44 and ML-DSA-65 verify, and the
# daemon outbox's memory with a backlog of 10,000 unsubmitted reports.
# Each client has one submission in flight and every answer waits for a
# checkpoint, so LOGBENCH_CLIENTS bounds the rate at about clients / 1.1 s:
# 2048 shows what the log itself sustains.
LOGBENCH_REPORTS ?= 6000
LOGBENCH_CLIENTS ?= 64,512,2048
bench-log:
	d=$$(mktemp -d "$${TMPDIR:-/tmp}/hvmon-logstack.XXXXXX"); \
	trap 'scripts/logstack.sh stop "$$d" >/dev/null 2>&1; rm -rf "$$d"' EXIT; \
	scripts/logstack.sh start "$$d" >/dev/null && \
	HVMON_LOGSTACK_ENV=$$d/env $(GO) test -run '^$$' -bench '^BenchmarkSubmit(POSIX|Fleet)$$' -benchtime 1x -timeout 60m \
		./integration/logfleet -logbench.reports $(LOGBENCH_REPORTS) -logbench.clients $(LOGBENCH_CLIENTS) && \
	$(GO) test -run '^$$' -bench '^Benchmark(VerifyProof|VerifyProofLogOnly|MLDSA44Verify|MLDSA65Verify)$$' ./tlog && \
	$(GO) test -run '^$$' -bench '^BenchmarkOutboxBacklog$$' -benchtime 1x ./host

# Regenerate testdata/vectors and testdata/keys after a deliberate format
# change, and the chain-audit vectors (policy/testdata/chain) after them.
vectors:
	$(GO) generate ./attest
	$(GO) generate ./policy

clean:
	rm -rf bin out
