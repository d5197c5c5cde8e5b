# The README's two commands are `make demo` and `make test`.
GO ?= go

.PHONY: all build demo test bench vectors clean

all: build

build:
	$(GO) build -o bin/hvmon ./cmd/hvmon

# The main job. Until the VM demo lands it runs the file-based flow end to
# end: keygen, attest, verify, tamper, verify again.
demo:
	scripts/demo-files.sh

# Every test tier; installs what the tests need first.
test:
	scripts/test.sh

# Sign and verify next to raw ML-DSA-65 in the same run.
bench:
	$(GO) test -run '^$$' -bench 'Sign|Verify' -benchmem -count 5 ./attest

# Regenerate testdata/vectors and testdata/keys after a deliberate format change.
vectors:
	$(GO) generate ./attest

clean:
	rm -rf bin
