package agentproto

import (
	"bytes"
	"encoding/json"
	"testing"
)

// BenchmarkEncodeLine: an attest response (20 KB of evidence) as the agent
// sends it, next to the same bytes from json.Marshal of the Response, which
// passes over the result a second time.
func BenchmarkEncodeLine(b *testing.B) {
	res := AttestResult{Evidence: bytes.Repeat([]byte{0x5a}, 20000), Seq: 3}
	b.Run("result", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := ResultResponse(1, res)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := EncodeLine(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw, err := json.Marshal(res)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := EncodeLine(&Response{ID: 1, Result: raw}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
