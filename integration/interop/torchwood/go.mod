// This module is the interop test tool of hvmon's transparency log: a
// checker that verifies hvmon's checkpoints, proofs and tiles with an
// implementation of the C2SP specifications hvmon did not write
// (filippo.io/torchwood). It is its own module so that hvmon's main module
// neither depends on torchwood nor needs its newer Go; scripts/interop.sh
// builds it with the toolchain torchwood asks for.
module hvmon.dev/hvmon/integration/interop/torchwood

go 1.27.0

require (
	filippo.io/torchwood v0.10.0
	golang.org/x/mod v0.40.0
)

require (
	golang.org/x/crypto v0.56.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
