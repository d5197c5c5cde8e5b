package agentproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestLineReader(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nafter\npartial"
	lr := NewLineReader(strings.NewReader(in), 50)
	for _, want := range []struct {
		line string
		err  error
	}{{"short", nil}, {"", ErrTooLarge}, {"after", nil}, {"", io.ErrUnexpectedEOF}, {"", io.EOF}} {
		got, err := lr.ReadLine()
		if string(got) != want.line || !errors.Is(err, want.err) && !(err == nil && want.err == nil) {
			t.Fatalf("ReadLine = %q, %v; want %q, %v", got, err, want.line, want.err)
		}
	}
	// A line exactly at the bound (newline included) passes.
	lr = NewLineReader(strings.NewReader(strings.Repeat("y", 49)+"\n"), 50)
	if got, err := lr.ReadLine(); err != nil || len(got) != 49 {
		t.Fatalf("ReadLine(49 bytes + newline, max 50) = %d bytes, %v", len(got), err)
	}
	// Lines longer than the bufio buffer are assembled.
	long := strings.Repeat("z", 200<<10)
	lr = NewLineReader(strings.NewReader(long+"\n"), MaxLine)
	if got, err := lr.ReadLine(); err != nil || string(got) != long {
		t.Fatalf("ReadLine(200 KiB) = %d bytes, %v", len(got), err)
	}
}

func TestDecodeResponse(t *testing.T) {
	for _, bad := range []string{`{"id":1}`, `{"id":1,"result":{},"error":{"code":"x","message":"y"}}`, `{"id":1,"result":{},"x":1}`, `{"id":1,"result":{}}x`} {
		if _, err := DecodeResponse([]byte(bad)); err == nil {
			t.Errorf("DecodeResponse(%s) accepted", bad)
		}
	}
	r, err := ResultResponse(4, SyncResult{Value: 9})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := EncodeLine(r)
	got, err := DecodeResponse(bytes.TrimSuffix(line, []byte("\n")))
	var res SyncResult
	if err != nil || got.ID != 4 || DecodeArgs(got.Result, &res) != nil || res.Value != 9 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := EncodeLine(strings.Repeat("a", MaxLine)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("EncodeLine(oversize) = %v, want ErrTooLarge", err)
	}
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), 3)
	f.Add([]byte(strings.Repeat("x", 70)+"\n"), 64)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			return
		}
		lr := NewLineReader(bytes.NewReader(in), max)
		total := 0
		for range len(in) + 2 {
			line, err := lr.ReadLine()
			if err == nil && len(line)+1 > max {
				t.Fatalf("line of %d bytes with max %d", len(line), max)
			}
			if err != nil && !errors.Is(err, ErrTooLarge) {
				return
			}
			total++
		}
		t.Fatalf("ReadLine did not reach the end of %d bytes", len(in))
	})
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"id":1,"result":{"value":3}}`))
	f.Add([]byte(`{"id":0,"error":{"code":"malformed","message":"m"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResponse(b)
		if err != nil {
			return
		}
		if (r.Error == nil) == (r.Result == nil) {
			t.Fatalf("accepted %s", b)
		}
	})
}

// TestEncodeLineResult: a result response is encoded byte for byte as
// json.Marshal encodes the Response (its shortcut skips only the second
// pass over the result), and decodes back to the same result.
func TestEncodeLineResult(t *testing.T) {
	results := []any{
		AttestResult{Evidence: bytes.Repeat([]byte{0xfa}, 20000), Seq: 7},
		SyncResult{Value: 1<<64 - 1},
		map[string]string{"<tag>": "a & b \u2028 \u2029 \"q\" \x01"},
		struct{}{},
		nil,
	}
	for _, id := range []uint64{0, 1, 1<<64 - 1} {
		for _, res := range results {
			r, err := ResultResponse(id, res)
			if err != nil {
				t.Fatal(err)
			}
			got, err := EncodeLine(r)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := json.Marshal(&Response{ID: r.ID, Result: r.Result})
			if err != nil {
				t.Fatal(err)
			}
			if want := append(plain, '\n'); !bytes.Equal(got, want) {
				t.Fatalf("EncodeLine(ResultResponse(%d, %T)) = %.200q, json.Marshal gives %.200q", id, res, got, want)
			}
			back, err := DecodeResponse(bytes.TrimSuffix(got, []byte("\n")))
			if err != nil || back.ID != id || !bytes.Equal(back.Result, r.Result) {
				t.Fatalf("decoding %.200q: %+v, %v", got, back, err)
			}
		}
	}
	// A Result replaced after ResultResponse goes through json.Marshal,
	// which refuses it when it is not JSON.
	r, _ := ResultResponse(1, SyncResult{Value: 1})
	r.Result = json.RawMessage("{not json")
	if _, err := EncodeLine(r); err == nil {
		t.Fatal("EncodeLine encoded a result that is not JSON")
	}
}
