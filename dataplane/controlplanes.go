package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// controlPlanes is the node's connection to its control planes: one of the
// replicas it was given (--cp a,b,c) at a time, the same one for every
// stream (discovery, stats, commands), so that the replica that sends the
// node its snapshots also holds its command stream and its records.
//
// The node starts with the first replica listed and stays with the one it
// is on for as long as it serves: when a stream cannot be opened there, or
// ends with an error that says the replica is gone or refuses to serve it
// (the process died, is stopping, cannot be reached), the node moves to the
// next one in the list, round, for all of its streams. Each stream's own
// reconnect loop (package reconnect: backoff with jitter) paces the moves,
// so a node that finds none of them up does not spin, and a fleet whose
// replica died spreads its reconnects out. It implements
// grpc.ClientConnInterface, so the streams' clients need not know there is
// more than one.
type controlPlanes struct {
	addrs []string
	dial  func(addr string) (*grpc.ClientConn, error)
	log   *slog.Logger

	mu     sync.Mutex
	cur    int              // index in addrs of the replica in use
	conn   *grpc.ClientConn // to addrs[cur]; nil until a stream needs it
	closed bool
}

var errClosed = status.Error(codes.Canceled, "dataplane: closed")

// splitControlPlanes parses a comma-separated list of addresses.
func splitControlPlanes(list string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dataplane: no control plane address in %q", list)
	}
	return out, nil
}

// current returns the connection to the replica in use, dialling it
// (lazily: grpc.NewClient connects on first use) when needed.
func (c *controlPlanes) current() (int, *grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, nil, errClosed
	}
	if c.conn == nil {
		conn, err := c.dial(c.addrs[c.cur])
		if err != nil {
			return 0, nil, fmt.Errorf("dataplane: control plane %s: %w", c.addrs[c.cur], err)
		}
		c.conn = conn
	}
	return c.cur, c.conn, nil
}

// Addr returns the address of the replica in use.
func (c *controlPlanes) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[c.cur]
}

// failed moves off replica i, which err says is gone or refuses, unless the
// node already moved off it (several streams see one replica die). The
// connection to it is closed, so streams still open there end and follow.
// A lone replica is kept, but one that refused the node as who it is
// (PERMISSION_DENIED, UNAUTHENTICATED: a certificate revoked or expired) is
// dialled anew: the next TLS handshake presents the certificate the files
// hold then, one renewed or issued since.
func (c *controlPlanes) failed(i int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || i != c.cur {
		return
	}
	if len(c.addrs) == 1 {
		if code := status.Code(err); (code == codes.PermissionDenied || code == codes.Unauthenticated) && c.conn != nil {
			go c.conn.Close() // Close waits for its goroutines; not under mu
			c.conn = nil
		}
		return
	}
	if c.conn != nil {
		go c.conn.Close() // Close waits for its goroutines; not under mu
		c.conn = nil
	}
	c.cur = (c.cur + 1) % len(c.addrs)
	c.log.Warn("control plane gone or refusing; moving to the next one",
		"from", c.addrs[i], "to", c.addrs[c.cur], "err", err)
}

// observe looks at how a call to replica i ended.
func (c *controlPlanes) observe(ctx context.Context, i int, err error) {
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return
	}
	switch status.Code(err) {
	case codes.Canceled, // the node's doing, or the connection closed by failed
		codes.Aborted,         // superseded by a newer stream of the same node
		codes.InvalidArgument: // the node's fault: every replica would say so
		return
	}
	c.failed(i, err)
}

// Invoke implements grpc.ClientConnInterface.
func (c *controlPlanes) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	i, conn, err := c.current()
	if err != nil {
		return err
	}
	err = conn.Invoke(ctx, method, args, reply, opts...)
	c.observe(ctx, i, err)
	return err
}

// NewStream implements grpc.ClientConnInterface.
func (c *controlPlanes) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	i, conn, err := c.current()
	if err != nil {
		return nil, err
	}
	st, err := conn.NewStream(ctx, desc, method, opts...)
	if err != nil {
		c.observe(ctx, i, err)
		return nil, err
	}
	return &watchedStream{ClientStream: st, ctx: ctx, cps: c, i: i}, nil
}

// Close closes the connection in use; streams end and no new ones open.
func (c *controlPlanes) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

// watchedStream tells controlPlanes how a stream on replica i ended: the
// error of a receive, or of the header, carries the stream's status.
type watchedStream struct {
	grpc.ClientStream
	ctx context.Context
	cps *controlPlanes
	i   int
}

func (s *watchedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	s.cps.observe(s.ctx, s.i, err)
	return err
}

func (s *watchedStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	s.cps.observe(s.ctx, s.i, err)
	return md, err
}

var _ grpc.ClientConnInterface = (*controlPlanes)(nil)
