// Package qmp is hvmon's QEMU Machine Protocol client.
//
// Client implements go-qemu's qmp.Monitor interface, so go-qemu's generated
// raw API plugs in, on a transport built for a supervisor that must not
// stall:
//
//   - replies are matched to commands by QMP "id", never by order;
//   - messages are read with a json.Decoder: no line-length limit, but at
//     most MaxMessageSize bytes a message, whatever QEMU sends (an endless
//     string or array costs the connection, not the daemon's memory);
//   - every call takes a context, and one without a deadline gets
//     Options.Timeout (DefaultTimeout): a QEMU that never answers costs a
//     timeout, not a stuck caller;
//   - QMP errors keep their class in a *Error;
//   - events go to per-subscriber queues that never block the reader or
//     commands: when a subscriber falls QueueSize events behind, the oldest
//     queued events are dropped and an EventDropped event carrying the count
//     is delivered in their place;
//   - when the socket closes (QEMU restarted or exited), the client
//     reconnects with backoff until Disconnect, and tells subscribers with
//     EventDisconnected and EventConnected.
package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	goqmp "github.com/digitalocean/go-qemu/qmp"
	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/internal/dropq"
)

// Event is go-qemu's event type; synthetic events use the names below.
type Event = goqmp.Event

// Synthetic events the client delivers to subscribers.
const (
	EventDropped      = "HVMON_EVENTS_DROPPED" // Data["count"]: events lost because the subscriber fell behind
	EventDisconnected = "HVMON_DISCONNECTED"   // the QMP socket closed; Data["error"]
	EventConnected    = "HVMON_CONNECTED"      // (re)connected and negotiated
)

// Defaults.
const (
	DefaultTimeout = 10 * time.Second
	QueueSize      = 1024
	maxBackoff     = 2 * time.Second
)

// MaxMessageSize bounds one message from QEMU (the greeting, a reply, an
// event), whitespace before it included. The largest reply hvmon asks for
// is a few KiB and QEMU's largest (query-qmp-schema) a few hundred; a peer
// that sends more in one message loses its connection with
// ErrMessageTooLarge, and the client reconnects. The decoder's buffer, and
// so the client's memory per connection, stays within a small multiple of
// it.
const MaxMessageSize = 4 << 20

// ErrMessageTooLarge is the error a connection ends with when QEMU sends a
// message of more than MaxMessageSize bytes.
var ErrMessageTooLarge = fmt.Errorf("qmp: message larger than %d bytes", MaxMessageSize)

// boundedReader sits under the json.Decoder. It hands the decoder at most
// limit bytes in total; the reader moves limit to MaxMessageSize past the
// end of each message the decoder returns (json.Decoder.InputOffset), so
// the bytes one message may take, buffered or not, are bounded. A json
// decoder reads a value to its end before it returns it, so a cap on its
// input is the only way to bound the value.
type boundedReader struct {
	r     io.Reader
	n     int64 // bytes handed to the decoder
	limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.n >= b.limit {
		return 0, ErrMessageTooLarge
	}
	if rem := b.limit - b.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// next allows the message after the one dec just returned.
func (b *boundedReader) next(dec *json.Decoder) { b.limit = dec.InputOffset() + MaxMessageSize }

// Error is a QMP error reply.
type Error struct {
	Class   string // e.g. "GenericError", "CommandNotFound", "DeviceNotActive"
	Desc    string
	Command string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrClosed is returned by calls on a client after Disconnect.
var ErrClosed = errors.New("qmp: client closed")

// ErrNotConnected is returned when the socket is down and reconnecting.
var ErrNotConnected = errors.New("qmp: not connected")

// Options configure a Client.
type Options struct {
	Logger hclog.Logger
	// Dial opens the transport; nil dials the unix socket at the path.
	Dial func(ctx context.Context) (net.Conn, error)
	// Reconnect keeps reconnecting after the socket closes (the default
	// for a supervisor is true; set false for one-shot tools).
	Reconnect bool
	// Timeout bounds a command whose context has no deadline; zero means
	// DefaultTimeout. A QEMU that never answers costs its caller this
	// long, never a goroutine for good.
	Timeout time.Duration
}

// Client is a QMP connection to one QEMU.
type Client struct {
	path string
	opts Options
	log  hclog.Logger

	wmu      sync.Mutex // serialises writes
	mu       sync.Mutex
	conn     net.Conn
	connGen  uint64 // counts connections; a reader exits when it is stale
	nextID   uint64
	pending  map[string]chan reply
	subs     map[*subscriber]struct{}
	greeting Greeting
	closed   bool
	up       chan struct{} // closed while connected; replaced on disconnect
	stop     chan struct{}
}

// Greeting is QEMU's QMP banner.
type Greeting struct {
	QMP struct {
		Version      goqmp.Version `json:"version"`
		Capabilities []string      `json:"capabilities"`
	} `json:"QMP"`
}

type reply struct {
	raw []byte
	err error
}

// New returns an unconnected client for the QMP unix socket at path.
func New(path string, opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	c := &Client{path: path, opts: opts, log: opts.Logger, pending: map[string]chan reply{},
		subs: map[*subscriber]struct{}{}, up: make(chan struct{}), stop: make(chan struct{})}
	return c
}

var _ goqmp.Monitor = (*Client)(nil)

// Connect implements qmp.Monitor with DefaultTimeout.
func (c *Client) Connect() error {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	return c.ConnectContext(ctx)
}

// ConnectContext dials, reads the greeting and negotiates capabilities.
func (c *Client) ConnectContext(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.conn != nil {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.connect(ctx)
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if c.opts.Dial != nil {
		return c.opts.Dial(ctx)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", c.path)
}

func (c *Client) connect(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return fmt.Errorf("qmp: dial %s: %w", c.path, err)
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	br := &boundedReader{r: conn, limit: MaxMessageSize}
	dec := json.NewDecoder(br)
	var g Greeting
	if err := dec.Decode(&g); err != nil {
		conn.Close()
		return fmt.Errorf("qmp: reading the greeting from %s: %w", c.path, err)
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities","id":"hvmon-negotiate"}` + "\n")); err != nil {
		conn.Close()
		return fmt.Errorf("qmp: negotiating: %w", err)
	}
	for {
		br.next(dec)
		var m message
		if err := dec.Decode(&m); err != nil {
			conn.Close()
			return fmt.Errorf("qmp: negotiating: %w", err)
		}
		if m.ID == nil {
			continue // an event before negotiation completed: not ours to keep
		}
		if m.Error != nil {
			conn.Close()
			return &Error{Class: m.Error.Class, Desc: m.Error.Desc, Command: "qmp_capabilities"}
		}
		break
	}
	conn.SetDeadline(time.Time{})
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return ErrClosed
	}
	c.conn = conn
	c.connGen++
	gen := c.connGen
	c.greeting = g
	close(c.up)
	c.mu.Unlock()
	c.log.Debug("connected", "socket", c.path, "qemu", g.QMP.Version.String())
	c.broadcast(Event{Event: EventConnected, Data: map[string]any{"qemu": g.QMP.Version.String()}})
	br.next(dec)
	go c.read(dec, br, conn, gen)
	return nil
}

// message is any QMP message from QEMU.
type message struct {
	ID     *json.RawMessage `json:"id"`
	Event  string           `json:"event"`
	Return json.RawMessage  `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// read is the one reader of a connection: it routes replies by id and
// events to subscribers, and never blocks on either.
func (c *Client) read(dec *json.Decoder, br *boundedReader, conn net.Conn, gen uint64) {
	var err error
	shutdown := false // QEMU said SHUTDOWN: its end of the connection closing is expected
	for {
		var raw json.RawMessage
		if err = dec.Decode(&raw); err != nil {
			break
		}
		br.next(dec)
		var m message
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		switch {
		case m.Event != "":
			var e Event
			if json.Unmarshal(raw, &e) == nil {
				shutdown = shutdown || e.Event == "SHUTDOWN"
				c.broadcast(e)
			}
		case m.ID != nil:
			var id string
			if json.Unmarshal(*m.ID, &id) != nil {
				continue // not one of our ids
			}
			c.mu.Lock()
			ch := c.pending[id]
			delete(c.pending, id)
			c.mu.Unlock()
			if ch != nil {
				ch <- reply{raw: raw}
			}
		}
	}
	c.mu.Lock()
	if c.connGen != gen {
		c.mu.Unlock()
		return
	}
	conn.Close()
	c.conn = nil
	c.up = make(chan struct{})
	for id, ch := range c.pending {
		ch <- reply{err: fmt.Errorf("%w: connection lost: %v", ErrNotConnected, err)}
		delete(c.pending, id)
	}
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	if shutdown && errors.Is(err, io.EOF) {
		c.log.Info("qmp connection closed after the guest shut down", "socket", c.path)
	} else {
		c.log.Warn("qmp connection lost", "socket", c.path, "error", err)
	}
	c.broadcast(Event{Event: EventDisconnected, Data: map[string]any{"error": fmt.Sprint(err)}})
	if c.opts.Reconnect {
		go c.reconnect()
	}
}

// reconnect redials with backoff until it succeeds or the client closes.
func (c *Client) reconnect() {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		err := c.connect(ctx)
		cancel()
		if err == nil || errors.Is(err, ErrClosed) {
			return
		}
		c.log.Trace("reconnect failed", "socket", c.path, "error", err)
		backoff = min(2*backoff, maxBackoff)
	}
}

// WaitConnected waits until the client is connected (or ctx ends).
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	up, closed := c.up, c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Greeting returns the banner of the current connection.
func (c *Client) Greeting() Greeting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.greeting
}

// Disconnect implements qmp.Monitor: it closes the connection, stops
// reconnecting and closes every event channel.
func (c *Client) Disconnect() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	conn := c.conn
	c.conn = nil
	subs := c.subs
	c.subs = map[*subscriber]struct{}{}
	for id, ch := range c.pending {
		ch <- reply{err: ErrClosed}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	for s := range subs {
		s.close()
	}
	if conn != nil {
		return conn.Close()
	}
	return nil
}

// Run implements qmp.Monitor: it sends a command (a JSON object with
// "execute" and optional "arguments"; an "id" is added) and returns QEMU's
// whole reply, waiting at most DefaultTimeout.
func (c *Client) Run(command []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	return c.RunContext(ctx, command)
}

// RunContext is Run with a context. A QMP error reply is a *Error. A
// context without a deadline gets Options.Timeout.
func (c *Client) RunContext(ctx context.Context, command []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	var cmd map[string]json.RawMessage
	if err := json.Unmarshal(command, &cmd); err != nil {
		return nil, fmt.Errorf("qmp: command is not a JSON object: %w", err)
	}
	var name string
	if err := json.Unmarshal(cmd["execute"], &name); err != nil || name == "" {
		return nil, fmt.Errorf("qmp: command has no \"execute\" name")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	conn := c.conn
	if conn == nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w (%s)", ErrNotConnected, name)
	}
	c.nextID++
	id := "hvmon-" + strconv.FormatUint(c.nextID, 10)
	ch := make(chan reply, 1)
	c.pending[id] = ch
	c.mu.Unlock()

	cmd["id"], _ = json.Marshal(id)
	line, err := json.Marshal(cmd)
	if err != nil {
		c.forget(id)
		return nil, err
	}
	if err := c.writeAll(ctx, conn, append(line, '\n')); err != nil {
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", name, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("qmp %s: %w", name, r.err)
		}
		var m message
		if err := json.Unmarshal(r.raw, &m); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", name, err)
		}
		if m.Error != nil {
			return nil, &Error{Class: m.Error.Class, Desc: m.Error.Desc, Command: name}
		}
		return r.raw, nil
	case <-ctx.Done():
		// A late reply finds no waiter and is dropped by the reader.
		c.forget(id)
		return nil, fmt.Errorf("qmp %s: %w", name, ctx.Err())
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// writeAll writes one command line under the context's deadline; writes
// from concurrent callers go through one lock so lines never interleave.
func (c *Client) writeAll(ctx context.Context, conn net.Conn, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if d, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(d)
		defer conn.SetWriteDeadline(time.Time{})
	}
	_, err := conn.Write(b)
	return err
}

// Execute runs a command by name with arguments (nil for none) and decodes
// its "return" value into result (nil to ignore it).
func (c *Client) Execute(ctx context.Context, name string, args, result any) error {
	cmd := goqmp.Command{Execute: name, Args: args}
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	raw, err := c.RunContext(ctx, b)
	if err != nil {
		return err
	}
	if result == nil {
		return nil
	}
	var r struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("qmp %s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(r.Return))
	if err := dec.Decode(result); err != nil {
		return fmt.Errorf("qmp %s: decoding the reply: %w", name, err)
	}
	return nil
}

// subscriber is one Events channel with its own bounded queue.
type subscriber struct {
	queue *dropq.Queue[Event]
	out   chan Event
	done  chan struct{}
	once  sync.Once
}

// Events implements qmp.Monitor: a channel of every event from now on,
// fed from a queue of QueueSize that never blocks the client (see the
// package doc). The channel closes when ctx ends or the client disconnects.
func (c *Client) Events(ctx context.Context) (<-chan Event, error) {
	s := &subscriber{queue: dropq.New[Event](QueueSize), out: make(chan Event), done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	go func() {
		defer close(s.out)
		// Forwarding ends when the subscriber is done (the client
		// disconnected) or its ctx ends (then it unsubscribes).
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-fctx.Done():
			}
		}()
		s.queue.Forward(fctx, s.out, DroppedEvent)
		if ctx.Err() != nil {
			c.unsubscribe(s)
		}
	}()
	return s.out, nil
}

func (c *Client) unsubscribe(s *subscriber) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
	s.close()
}

func (s *subscriber) close() { s.once.Do(func() { close(s.done) }) }

func (s *subscriber) push(e Event) { s.queue.Push(e) }

func (c *Client) broadcast(e Event) {
	c.mu.Lock()
	subs := make([]*subscriber, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.push(e)
	}
}

// DroppedEvent is the EventDropped event that tells a consumer n events
// were dropped before the next one.
func DroppedEvent(n int) Event {
	return Event{Event: EventDropped, Data: map[string]any{"count": n}}
}
