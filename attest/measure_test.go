package attest

import "hvmon.dev/hvmon/measure"

func measureBytes(b []byte) Digest { return measure.Bytes(b) }
