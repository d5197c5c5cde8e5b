package agentproto

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"hvmon.dev/hvmon/attest"
)

// Conn is the byte stream to an agent: a unix socket to QEMU's chardev, or
// a libvirt channel. Deadlines make every call bounded.
type Conn interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// Client talks to one agent. It allows one call at a time (calls are
// serialised); replies are matched by id and anything else is discarded.
type Client struct {
	mu     sync.Mutex
	conn   Conn
	lines  *LineReader
	nextID uint64
	synced bool
}

// NewClient wraps a connection. Call Sync before anything else after every
// (re)connect; the other calls do it themselves when needed.
func NewClient(c Conn) *Client {
	return &Client{conn: c, lines: NewLineReader(c, MaxLine)}
}

// ErrNotSynced reports that the agent did not answer the sync exchange.
var ErrNotSynced = errors.New("agentproto: agent did not answer sync")

// ErrBadReply reports that the agent answered the request, but not as the
// protocol says (a result that does not decode strictly, or evidence that
// does not hash to the hash sent with it). The session stays in sync.
var ErrBadReply = errors.New("agentproto: bad reply")

// Sync starts a session: it ends any partial line a previous session left
// in the channel, sends a sync request with a fresh random value, and
// discards every line until the agent echoes that value. virtio-serial
// keeps stale bytes across host reconnects; this is how they are dropped.
func (c *Client) Sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.syncLocked(ctx)
}

func (c *Client) syncLocked(ctx context.Context) error {
	c.synced = false
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	value := binary.LittleEndian.Uint64(b[:])
	ctx, cancel := withDefaultTimeout(ctx, DefaultTimeout)
	defer cancel()
	stop := c.deadlines(ctx)
	defer stop()
	// A lone newline terminates whatever partial line the agent may hold.
	if _, err := c.conn.Write([]byte("\n")); err != nil {
		return fmt.Errorf("agent sync: %w", ctxErr(ctx, err))
	}
	id := c.id()
	if err := c.send(id, OpSync, SyncArgs{Value: value}); err != nil {
		return fmt.Errorf("agent sync: %w", ctxErr(ctx, err))
	}
	for {
		line, err := c.lines.ReadLine()
		if errors.Is(err, ErrTooLarge) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNotSynced, ctxErr(ctx, err))
		}
		resp, err := DecodeResponse(line)
		if err != nil || resp.ID != id || resp.Error != nil {
			continue // stale or garbled: exactly what sync is for
		}
		var res SyncResult
		if DecodeArgs(resp.Result, &res) == nil && res.Value == value {
			c.synced = true
			return nil
		}
	}
}

// Hello asks the agent to describe itself.
func (c *Client) Hello(ctx context.Context) (*HelloResult, error) {
	var res HelloResult
	if err := c.call(ctx, DefaultTimeout, OpHello, nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Regions lists the agent's configured regions.
func (c *Client) Regions(ctx context.Context) ([]attest.Region, error) {
	var res RegionsResult
	if err := c.call(ctx, DefaultTimeout, OpRegions, nil, &res); err != nil {
		return nil, err
	}
	return res.Regions, nil
}

// Attest asks for guest evidence. Without a deadline in ctx it waits at
// most DefaultAttestTimeout. The caller verifies what comes back.
func (c *Client) Attest(ctx context.Context, args AttestArgs) (*AttestResult, error) {
	var res AttestResult
	if err := c.call(ctx, DefaultAttestTimeout, OpAttest, args, &res); err != nil {
		return nil, err
	}
	if attest.ReportHash(res.Evidence) != res.Hash {
		return nil, fmt.Errorf("agent attest: %w: hash does not match the evidence returned", ErrBadReply)
	}
	return &res, nil
}

// call sends one request and waits for its reply. An error response from
// the agent is returned as *Error.
func (c *Client) call(ctx context.Context, timeout time.Duration, op string, args, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		if err := c.syncLocked(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := withDefaultTimeout(ctx, timeout)
	defer cancel()
	stop := c.deadlines(ctx)
	defer stop()
	id := c.id()
	if err := c.send(id, op, args); err != nil {
		c.synced = false
		return fmt.Errorf("agent %s: %w", op, ctxErr(ctx, err))
	}
	for {
		line, err := c.lines.ReadLine()
		if errors.Is(err, ErrTooLarge) {
			continue
		}
		if err != nil {
			// The session is in an unknown state: the next call syncs again.
			c.synced = false
			return fmt.Errorf("agent %s: %w", op, ctxErr(ctx, err))
		}
		resp, err := DecodeResponse(line)
		if err != nil {
			continue
		}
		switch {
		case resp.ID == id && resp.Error != nil:
			return resp.Error
		case resp.ID == id:
			if err := DecodeArgs(resp.Result, result); err != nil {
				return fmt.Errorf("agent %s: %w: %w", op, ErrBadReply, err)
			}
			return nil
		case resp.ID == 0 && resp.Error != nil:
			// The agent could not read our request at all.
			return resp.Error
		}
	}
}

func (c *Client) id() uint64 {
	c.nextID++
	return c.nextID
}

func (c *Client) send(id uint64, op string, args any) error {
	req := Request{ID: id, Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		req.Args = b
	}
	line, err := EncodeLine(req)
	if err != nil {
		return err
	}
	_, err = c.conn.Write(line)
	return err
}

// deadlines applies ctx's deadline to the connection and interrupts
// blocked I/O when ctx is cancelled. The returned func undoes both.
func (c *Client) deadlines(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		c.conn.SetDeadline(time.Time{})
	}
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// ctxErr prefers the context's error to the I/O error it caused. The
// connection's deadline is the context's, and may fire a moment before the
// context's own timer: an I/O timeout is then the context's deadline too.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}
