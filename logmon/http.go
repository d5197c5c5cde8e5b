package logmon

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"hvmon.dev/hvmon/tlog"
)

// HTTPReader reads a log served over HTTP in the tlog-tiles layout
// (GET <root>/checkpoint, <root>/tile/...). A 404 is an error matching
// fs.ErrNotExist, so tlog falls back from a partial tile or bundle to the
// full one. Bodies are bounded as DirReader's files are.
type HTTPReader struct {
	Root   *url.URL
	Client *http.Client // nil: http.DefaultClient
}

var _ tlog.TileReader = (*HTTPReader)(nil)

// NewHTTPReader parses the log's root URL (http or https).
func NewHTTPReader(root string, c *http.Client) (*HTTPReader, error) {
	u, err := url.Parse(root)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("log URL %q: want http:// or https:// and a host", root)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &HTTPReader{Root: u, Client: c}, nil
}

func (h *HTTPReader) get(ctx context.Context, rel string, max int64) ([]byte, error) {
	u := *h.Root
	u.Path += "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %w", u.String(), fs.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u.String(), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.String(), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("GET %s: more than %d bytes", u.String(), max)
	}
	return b, nil
}

// ReadCheckpoint fetches the checkpoint.
func (h *HTTPReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return h.get(ctx, "checkpoint", tlog.MaxCheckpointSize)
}

// ReadTile fetches a hash tile; width 0 is the full tile.
func (h *HTTPReader) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	return h.get(ctx, tlog.TilePath(level, index, width), maxTile)
}

// ReadEntryBundle fetches an entry bundle; width 0 is the full bundle.
func (h *HTTPReader) ReadEntryBundle(ctx context.Context, index uint64, width uint8) ([]byte, error) {
	return h.get(ctx, tlog.EntriesPath(index, width), maxBundle)
}
