// Package tlogclient reads and writes a transparency log: tlog.TileReaders
// over a log's read URL and over a log published as a directory (C2SP
// tlog-tiles layout), and the submission call of hvmon's log server
// (POST /v1/add). It holds no state beyond its http.Client.
package tlogclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
)

// Bounds of what a reader takes from a log: a tile holds 256 hashes; an
// entry bundle 256 entries of at most tlog.MaxEntrySize bytes with their
// two-byte lengths.
const (
	MaxTileSize   = 256 * 32
	MaxBundleSize = 256 * (2 + tlog.MaxEntrySize)
)

// HTTPReader is a tlog.TileReader over a log's read URL. A 404 answer
// is a missing object (an error matching fs.ErrNotExist), so that tlog
// falls back from a partial tile, which a log may have collected, to the
// full one.
type HTTPReader struct {
	// Base is the read URL: the checkpoint is at Base+"/checkpoint".
	Base string
	// Client is the HTTP client; nil means http.DefaultClient.
	Client *http.Client
}

var _ tlog.TileReader = (*HTTPReader)(nil)

// NewHTTPReader checks a log's read URL given by a user (http or https,
// with a host) and returns a reader over it.
func NewHTTPReader(base string, c *http.Client) (*HTTPReader, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("log URL %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("log URL %q: want http:// or https:// and a host", base)
	}
	return &HTTPReader{Base: strings.TrimRight(base, "/"), Client: c}, nil
}

// ReadCheckpoint implements tlog.TileReader.
func (r *HTTPReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return r.get(ctx, "checkpoint", tlog.MaxCheckpointSize)
}

// ReadTile implements tlog.TileReader.
func (r *HTTPReader) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	return r.get(ctx, tlog.TilePath(level, index, width), MaxTileSize)
}

// ReadEntryBundle implements tlog.TileReader.
func (r *HTTPReader) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	return r.get(ctx, tlog.EntriesPath(index, width), MaxBundleSize)
}

func (r *HTTPReader) get(ctx context.Context, path string, max int64) ([]byte, error) {
	u := strings.TrimSuffix(r.Base, "/") + "/" + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client(r.Client).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", u, fs.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return boundedfile.ReadAll(resp.Body, u, max)
}

func client(c *http.Client) *http.Client {
	if c == nil {
		return http.DefaultClient
	}
	return c
}

// SubmitResult is the answer of a log server to a submission.
type SubmitResult struct {
	// Status is the HTTP status.
	Status int
	// Proof is the tlog-proof file of a 200 answer (not verified here).
	Proof []byte
	// RetryAfter is the Retry-After header of a 503 in seconds (0 when
	// absent or not a number of seconds).
	RetryAfter int
	// Message is the error text of other answers.
	Message string
}

// maxErrorBody bounds the error text read from a refusal.
const maxErrorBody = 4096

// Submit posts entry to the log server at base (POST base/v1/add). An
// error means no answer arrived: the request may or may not have reached
// the log (an ambiguous failure).
func Submit(ctx context.Context, c *http.Client, base string, entry []byte) (SubmitResult, error) {
	u, err := url.JoinPath(base, "v1", "add")
	if err != nil {
		return SubmitResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(entry))
	if err != nil {
		return SubmitResult{}, err
	}
	req.Header.Set("Content-Type", "application/cose")
	resp, err := client(c).Do(req)
	if err != nil {
		return SubmitResult{}, err
	}
	defer resp.Body.Close()
	res := SubmitResult{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		res.Proof, err = boundedfile.ReadAll(resp.Body, u, tlog.MaxProofSize)
		if err != nil {
			return SubmitResult{}, err
		}
		return res, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	res.Message = strings.TrimSpace(string(b))
	// Retry-After in seconds only: an HTTP date (which the log server
	// never sends) is ignored, and the caller backs off on its own.
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		res.RetryAfter = n
	}
	return res, nil
}
