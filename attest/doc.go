// Package attest defines the objects hvmon signs — reports and the guest
// evidence they embed — and signs, decodes and verifies them offline.
//
// docs/FORMAT.md is the normative specification of every byte: this
// package is its implementation, and testdata/vectors holds signed objects
// with the verdict and exit code each must give (TestVectors checks them).
// Where this comment and FORMAT.md differ, FORMAT.md is right and the
// difference is a bug. The format is version 1; anything it does not allow
// is rejected.
//
// # Signed objects
//
// A report is what a signer says about one workload (a VM) at one
// lifecycle Event: when it was issued and until when it holds, the nonce it
// answers, the workload and the signer's Platform, the signer's Identity,
// a sequence number and the ReportHash of the signer's previous report for
// the workload (seq and prev chain a signer's reports), and its Claims.
// A Claim is one Region and the Snapshot of it: the root of the region's
// page tree (package measure). A host supervisor's report also carries
// Observations — what the host saw of the event, with the AgentStatus of
// its request for guest evidence, one of six values — and, when the agent
// answered, the guest evidence exactly as the agent signed it.
//
// Guest evidence is what the agent inside the VM says: the same event,
// nonce and VM, the claims the guest measured, the agent's own public key
// (GuestKey), its own seq and prev, and, inside a TEE, the hardware's
// attestation (HardwareEvidence: an SEV-SNP report or a TDX quote with its
// certificates). The hardware report's REPORT_DATA is GuestReportData:
// SHA3-512 over a versioned tag and the guest evidence without its
// hardware part. Only that binding makes a guest key more than the word of
// the host that embedded it.
//
// Both objects travel as a tagged COSE_Sign1 (RFC 9052) in deterministic
// CBOR (RFC 8949 §4.2.1), signed with ML-DSA-65 (FIPS 204, pure, empty
// context):
//
//	18([ << {1: -49, 4: kid, 16: typ} >>, {}, payload, signature ])
//
// The protected header holds exactly the algorithm (-49, AlgMLDSA65), the
// key id and a content type that keeps a report and guest evidence apart
// ("application/hvmon-report+cbor", "application/hvmon-guest-evidence+cbor");
// the unprotected header is empty; the payload is attached and carries an
// EAT profile naming its type and version ("tag:hvmon.dev,2026:report/v1",
// "tag:hvmon.dev,2026:guest-evidence/v1").
//
// A key id (KeyIDOf, PublicKey.KeyID) is SHA3-256 of the 1952-byte raw
// public key. A report's kid is the id of a key the verifier pins; a guest
// evidence's kid is the id of the GuestKey it carries. Key files are PEM:
// an SPKI "PUBLIC KEY" and a PKCS#8 "PRIVATE KEY" holding the 32-byte seed
// (RFC 9881; ParsePublicKeyPEM, ParsePrivateKeyPEM). ReportHash, SHA3-256 of the
// complete COSE_Sign1 bytes, names a signed object; prev links use it.
//
// # Signing
//
// Sign and SignGuestEvidence encode a payload in deterministic CBOR, decode
// it again with the verifier's rules and sign it under any Signer
// (*PrivateKey is one). They refuse what Verify would reject: an unknown
// event or agent status, a bound broken, an object larger than
// MaxReportSize (ErrTooLarge). An Attester measures the regions of a
// Backend and signs one report over them; a ContinuousAttester does so at
// an interval, chaining its reports.
//
// # Verification
//
// Verify checks a report against VerifyOptions, which pin the trusted
// keys and hold the verifier's own reference values: nothing the report
// says about what to expect is used. It runs these checks in order, stops
// at the first failure, and returns the Result so far (each check a Check
// line) with an error of the class named:
//
//  1. format: the envelope is a tagged COSE_Sign1 of at most MaxReportSize
//     bytes in the one encoding hvmon writes, with exactly the protected
//     header above and a signature of ML-DSA-65 size. ErrMalformed.
//  2. trust: the kid is the id of a pinned key; a key inside the object is
//     never used for this. ErrUntrustedKey.
//  3. signature: the algorithm is ML-DSA-65 (ErrAlgorithm); the content
//     type is a report's and the signature verifies under the pinned key
//     (ErrSignature).
//  4. format: only now is the payload decoded, under one round-trip rule
//     (it must re-encode to exactly its bytes: no trailing data, no
//     non-canonical encoding, no unknown or missing field) and the
//     semantic rules of FORMAT.md: bounds, a known event and agent status,
//     claims that agree with their report, unique region ids, the attester
//     kid equal to the header's. ErrMalformed.
//  5. guest: embedded guest evidence passes CheckGuestEvidence: the same
//     decoding (ErrMalformed), its own signature under its GuestKey
//     (ErrSignature), the report's nonce, event and VM (ErrBinding), and
//     hardware evidence, verified by VerifyOptions.Evidence against
//     GuestReportData (ErrBinding; without an EvidenceVerifier it fails).
//  6. freshness: expires-at minus issued-at at most MaxLifetime
//     (ErrLifetime); issued-at not after now, and neither the guest
//     evidence nor any snapshot later than issued-at (ErrNotYetValid);
//     expires-at not before now (ErrExpired); the guest evidence at most
//     MaxEvidenceAge older than its report (ErrStaleEvidence). Every
//     comparison but the lifetime cap allows ClockSkew (none with
//     NoClockSkew).
//  7. nonce: the report answers the verifier's nonce, when it gave one.
//     ErrNonce.
//  8. vm: the report is about VerifyOptions.VM (Report.IsAbout), when
//     set. ErrWrongVM.
//  9. hardware: with RequireHardware, the guest evidence carries verified
//     hardware evidence. ErrNoHardware.
//  10. completeness: the report covers a region (with RequireHardware, one
//     that counts), and every expected region is among the claims that
//     count (see below). ErrIncomplete.
//  11. drift: every expected region's root is among the accepted roots.
//     In Strict mode a *RegionDriftError (ErrRegionDrift); otherwise a
//     warning in Result.Drift and the report still verifies.
//
// Result.Report and Result.Guest are set only once the signature and the
// guest evidence have verified: nothing unauthenticated is returned as
// data. Inspect decodes a report with the same strict rules and verifies
// nothing, for display. Appraising a verified report against a policy
// (hardware reference values, per-VM rules, chains) is package policy's
// job, not this package's.
//
// # Whose measurements count
//
// A claim's platform label is its signer's statement and decides nothing.
// Origins says who vouches for a claim from where it sits: the guest under
// verified hardware evidence, the guest without hardware (the host's word),
// a host report's own claims (the host's word), or the signer's own
// measurement in any other report. Result.CountedClaims applies the one
// rule of FORMAT.md §9.1 — with AllowHostMeasured and RequireHardware —
// to say which claims may satisfy a reference value. Verify uses it for
// expected roots, and package policy for its region rules, so the two
// cannot disagree.
//
// # Errors
//
// Every error Verify returns matches exactly one class with errors.Is;
// each class has an exit code in hvmon's CLI:
//
//	ErrMalformed  *MalformedError: not a well-formed hvmon object     exit 2
//	ErrTrust      ErrUntrustedKey, ErrAlgorithm, ErrSignature,        exit 3
//	              ErrBinding
//	ErrFreshness  ErrLifetime, ErrNotYetValid, ErrExpired,            exit 4
//	              ErrStaleEvidence, ErrNonce
//	ErrAppraisal  ErrWrongVM, ErrNoHardware, ErrIncomplete,           exit 5
//	              ErrRegionDrift (*RegionDriftError)
//
// ErrTrust, ErrFreshness and ErrAppraisal also match ErrVerification. The
// CLI exits 0 for a valid report and 1 for usage, configuration and I/O
// errors (a malformed key file among them), which decide nothing about a
// report; package policy's contraindicated verdicts match ErrAppraisal
// too. Outside verification, ErrInvalidRegion (*InvalidRegionError),
// ErrInvalidVMName (*InvalidVMNameError) and ErrBackend (*BackendError)
// report a bad region definition, a VM name outside VMNameRule and a
// backend failure. Branch with errors.Is and errors.As, never on message
// text.
package attest
