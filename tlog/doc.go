// Package tlog is hvmon's side of its transparency log: the formats a log
// server, a host's outbox, a verifier and a log monitor share, and the
// checks they make. It does no I/O and starts no goroutines: logs are read
// through the TileReader interface.
//
// An entry of an hvmon log is one report's COSE_Sign1 bytes, byte for byte
// (at most MaxEntrySize); its leaf hash is the RFC 6962 SHA-256(0x00 ‖
// entry) (LeafHash). docs/FORMAT.md §15 is the normative description of
// every byte below; where this comment and FORMAT.md differ, FORMAT.md is
// right.
//
// # Keys and checkpoints
//
// A log signs its checkpoints (C2SP tlog-checkpoint: origin, tree size,
// root hash) with an ML-DSA-44 key (PrivateKey) whose name is the log's
// origin. The signature line is a C2SP ML-DSA-44 cosignature (signature
// type 0x06): a timestamp and an ML-DSA-44 signature over the binary
// "subtree/v1" message, made by the key's NoteSigner, which plugs into any
// signed-note writer. The public half is published as a C2SP verifier key,
// name+keyID+base64(0x06 ‖ public key) (Verifier, ParseVerifierKey,
// LogVerifier). Witnesses add cosignatures of the same kind or of the
// Ed25519 type 0x04 (cosignature/v1 message); Cosign appends them.
//
// A Policy names the log key, the witness keys and a quorum; Policy.Open
// verifies a signed checkpoint against it and returns the Checkpoint.
//
// # Proofs
//
// A proof that an entry is in the log is a C2SP tlog-proof@v1 file (Proof,
// ParseProof, VerifyProof): the entry's index, its inclusion path and the
// signed checkpoint with its witness lines, verifiable offline with only
// the policy's keys. A consistency file (ConsistencyProof,
// ParseConsistency, VerifyConsistency, CheckConsistency) proves that one
// checkpoint's tree extends another's.
//
// # Reading a log
//
// ProveInclusion, ProveConsistency, LeafHashes and ReadEntries build
// proofs and read entries from a log's tiles (C2SP tlog-tiles; TilePath,
// EntriesPath, ParseEntryBundle), checking every tile against the
// checkpoint's root, and falling back from a partial tile to the full one
// when the log has replaced it.
//
// # Errors
//
// Every error this package returns about its input matches one sentinel
// (ErrMalformed, ErrLogSignature, ErrNotIncluded, ...), and through it one
// of hvmon's error classes: attest.ErrMalformed for bytes that do not
// parse, attest.ErrTrust for signatures, quorums and proofs that fail.
package tlog
