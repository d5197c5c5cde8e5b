// Package agentproto is the protocol between hvmon's host side and its
// guest agent, over a virtio-serial port (or any byte stream).
// docs/AGENT-PROTOCOL.md is the normative description; this package is its
// reference implementation, used by both ends.
//
// Messages are JSON objects, one per line (newline-delimited JSON), at
// most MaxLine bytes including the newline. Byte strings are base64
// (standard alphabet, padded), as encoding/json writes them. Every request
// carries an id that its response echoes. Unknown fields are errors.
package agentproto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"hvmon.dev/hvmon/attest"
)

// Version is the protocol version the agent reports in hello.
const Version = 1

// Named bounds and timeouts.
const (
	// MaxLine bounds one message, newline included: a guest evidence object
	// (at most attest.MaxReportSize) in base64 plus the envelope.
	MaxLine = 2 << 20
	// MaxRegionSelector bounds the region ids an attest request may name.
	MaxRegionSelector = attest.MaxRegions
	// MaxErrorMessage bounds the message of an error response that
	// ErrorResponse builds (a message can quote the request it refuses).
	// A host does not rely on it: it bounds what it records itself.
	MaxErrorMessage = 4096
	// DefaultTimeout is how long the host waits for a reply to sync, hello
	// and regions.
	DefaultTimeout = 5 * time.Second
	// DefaultAttestTimeout is how long the host waits for an attest reply:
	// measuring large regions takes time.
	DefaultAttestTimeout = 2 * time.Minute
)

// Operations.
const (
	OpSync    = "sync"
	OpHello   = "hello"
	OpRegions = "regions"
	OpAttest  = "attest"
)

// Error codes of a failed response.
const (
	CodeMalformed = "malformed"  // not a JSON request object, unknown field, bad types
	CodeTooLarge  = "too-large"  // the line exceeded MaxLine
	CodeUnknownOp = "unknown-op" // op is not one of the operations
	CodeBadArgs   = "bad-args"   // arguments missing or out of bounds
	CodeMeasure   = "measure"    // a region could not be measured
	CodeEvidence  = "evidence"   // the hardware evidence could not be obtained
	CodeInternal  = "internal"   // anything else on the agent's side
)

// Request is one message from host to agent.
type Request struct {
	ID   uint64          `json:"id"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response is one message from agent to host. Exactly one of Result and
// Error is set. A response to a line that could not be parsed has ID 0.
type Response struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`

	// marshalled is the Result that ResultResponse made with json.Marshal
	// (valid and compact), for EncodeLine.
	marshalled json.RawMessage
}

// Error is a failed response's reason. It implements error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("agent: %s: %s", e.Code, e.Message) }

// SyncArgs and SyncResult: the agent echoes Value. The host sends a fresh
// random value at every (re)connect and discards every line until the
// matching response arrives.
type SyncArgs struct {
	Value uint64 `json:"value"`
}

// SyncResult echoes SyncArgs.Value.
type SyncResult struct {
	Value uint64 `json:"value"`
}

// HelloResult describes the agent.
type HelloResult struct {
	Protocol     int             `json:"protocol"`
	Version      string          `json:"version"`  // hvmon version of the agent
	Platform     attest.Platform `json:"platform"` // evidence type, or "none"
	KeyID        attest.Digest   `json:"key_id"`   // the guest key's id
	Capabilities []string        `json:"capabilities"`
	Seq          uint64          `json:"seq"` // the seq the next guest evidence will carry
}

// RegionsResult lists the configured regions.
type RegionsResult struct {
	Regions []attest.Region `json:"regions"`
}

// AttestArgs asks for guest evidence.
type AttestArgs struct {
	Nonce   []byte       `json:"nonce"`             // 8 to 64 bytes
	Event   attest.Event `json:"event"`             // the lifecycle event
	VM      string       `json:"vm"`                // the VM identifier, as the host names it
	Regions []string     `json:"regions,omitempty"` // ids to measure; empty means all
}

// AttestResult carries the guest evidence COSE_Sign1.
type AttestResult struct {
	Evidence []byte        `json:"evidence"`
	Hash     attest.Digest `json:"hash"` // attest.ReportHash(Evidence)
	Seq      uint64        `json:"seq"`
}

// ErrTooLarge is returned by a LineReader for a line longer than MaxLine;
// the reader has skipped to the next line.
var ErrTooLarge = errors.New("agentproto: message longer than MaxLine")

// LineReader reads newline-terminated lines of at most max bytes.
type LineReader struct {
	r   *bufio.Reader
	max int
}

// NewLineReader returns a reader for lines of at most max bytes.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// ReadLine returns the next line without its newline. A line longer than
// the bound is consumed and reported as ErrTooLarge; a final line without
// a newline is reported with io.ErrUnexpectedEOF.
func (l *LineReader) ReadLine() ([]byte, error) {
	var line []byte
	tooLarge := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLarge {
			if len(line)+len(chunk) > l.max {
				tooLarge, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLarge {
				return nil, ErrTooLarge
			}
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(line) > 0 || tooLarge):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// DecodeRequest parses one request line strictly.
func DecodeRequest(line []byte) (*Request, error) {
	var req Request
	if err := decodeStrict(line, &req); err != nil {
		return nil, err
	}
	if req.ID == 0 {
		return nil, fmt.Errorf("request id must be a positive integer")
	}
	return &req, nil
}

// DecodeResponse parses one response line strictly.
func DecodeResponse(line []byte) (*Response, error) {
	var resp Response
	if err := decodeStrict(line, &resp); err != nil {
		return nil, err
	}
	if (resp.Error == nil) == (resp.Result == nil) {
		return nil, fmt.Errorf("response %d must carry exactly one of result and error", resp.ID)
	}
	return &resp, nil
}

// DecodeArgs parses a request's or response's inner object strictly into v.
func DecodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	return decodeStrict(raw, v)
}

// decodeStrict decodes exactly one JSON value with no unknown fields and
// nothing after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}

// EncodeLine marshals v as one line, newline included, refusing lines
// longer than MaxLine.
func EncodeLine(v any) ([]byte, error) {
	var b []byte
	if r, ok := v.(*Response); ok && r.Error == nil && r.fromMarshal() {
		// The bytes json.Marshal would give, without its second pass over
		// the result (it validates and compacts a RawMessage again): for
		// an attest result of ~20 KB that pass took six times as long as
		// making the result, ~0.3 ms of the agent's ~1 ms of CPU per
		// attest (BenchmarkEncodeLine, BenchmarkAttest).
		b = make([]byte, 0, len(r.Result)+32)
		b = append(b, `{"id":`...)
		b = strconv.AppendUint(b, r.ID, 10)
		b = append(b, `,"result":`...)
		b = append(b, r.Result...)
		b = append(b, '}')
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	if len(b)+1 > MaxLine {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b)+1)
	}
	return append(b, '\n'), nil
}

// ResultResponse builds a successful response.
func ResultResponse(id uint64, result any) (*Response, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	return &Response{ID: id, Result: b, marshalled: b}, nil
}

// fromMarshal says whether Result is still what ResultResponse marshalled.
func (r *Response) fromMarshal() bool {
	return len(r.Result) > 0 && len(r.Result) == len(r.marshalled) && &r.Result[0] == &r.marshalled[0]
}

// ErrorResponse builds a failed response. A message longer than
// MaxErrorMessage bytes is cut (at a character boundary) and ends in "…".
func ErrorResponse(id uint64, code, format string, args ...any) *Response {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > MaxErrorMessage {
		n := MaxErrorMessage - len("…")
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n] + "…"
	}
	return &Response{ID: id, Error: &Error{Code: code, Message: msg}}
}
