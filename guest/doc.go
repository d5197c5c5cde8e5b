// Package guest will hold the guest agent (hvmon agent): the virtio-serial
// channel server, region sources, and the SEV-SNP, TDX and simulated
// hardware evidence backends that bind attest.GuestReportData into a
// hardware report. It is not written yet; see docs/ARCHITECTURE.md.
package guest
