package reportview

import (
	"os"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

func TestFieldsOfAVectorReport(t *testing.T) {
	b, err := os.ReadFile("../../policy/testdata/chain/lifecycle/07-hv-b-restore.cose")
	if err != nil {
		t.Fatal(err)
	}
	in, err := attest.Inspect(b)
	if err != nil {
		t.Fatal(err)
	}
	fs := Fields(in)
	var got []string
	for _, f := range fs {
		got = append(got, strings.Repeat(".", f.Depth)+f.Name)
	}
	want := []string{"report hash", "content type", "algorithm", "event", "workload", "platform", "attester key id", "attester name",
		"seq", "prev", "issued", "expires", "nonce", "claims", "host observations", ".host", ".event at", ".agent", ".fact job_type",
		"guest evidence", ".hash", ".guest key id", ".vm", ".event", ".platform", ".issued", ".evidence age", ".seq", ".prev", ".nonce",
		".hardware", ".claims", ".region weights", "...size", "...root", "...source", "...protection", "...taken at"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("Fields(07-hv-b-restore) names:\n got %v\nwant %v", got, want)
	}
	if fs[0].Value != in.ReportHash.String() || fs[3].Value != "restore" || fs[18].Value != "snapshot-load" {
		t.Errorf("Fields: report hash %q, event %q, job_type %q", fs[0].Value, fs[3].Value, fs[18].Value)
	}
	if !fs[14].Heading || !fs[32].Heading || fs[13].Heading {
		t.Errorf("Fields: headings misplaced: %+v %+v %+v", fs[13], fs[14], fs[32])
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"vm-1":          "vm-1",
		"a\x1b[31mred":  `"a\x1b[31mred"`,
		"tab\there":     `"tab\there"`,
		"ünïcode ok":    "ünïcode ok",
		"nul\x00inside": `"nul\x00inside"`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %s, want %s", in, got, want)
		}
	}
	if got := VMNameText("vm 1"); !strings.Contains(got, "not a valid VM name") {
		t.Errorf("VMNameText(%q) = %q: want it flagged", "vm 1", got)
	}
}
