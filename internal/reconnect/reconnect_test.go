package reconnect

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// waits records the waits loop chooses, without waiting.
type waits []time.Duration

func (w *waits) wait(_ context.Context, d time.Duration) bool {
	*w = append(*w, d)
	return true
}

// Loop runs the stream again after each end, waiting at least min/2 and
// less than min/2 plus its ceiling each time, the ceiling doubling from min
// up to max, and back to min after a stream that progressed; and it
// returns once ctx ends.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const min, max = 10 * time.Millisecond, 40 * time.Millisecond
	progress := []bool{false, false, false, false, true, false}
	streams := 0
	var got waits
	loop(ctx, min, max, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", nil, func(context.Context) (bool, error) {
		if streams++; streams == len(progress) {
			cancel()
			return false, ctx.Err()
		}
		return progress[streams-1], errors.New("ended")
	}, got.wait)
	ceilings := []time.Duration{min, 2 * min, max, max, min}
	if len(got) != len(ceilings) {
		t.Fatalf("%d streams and %d waits, want %d and %d", streams, len(got), len(progress), len(ceilings))
	}
	for i, c := range ceilings {
		if w := got[i]; w < min/2 || w >= min/2+c {
			t.Errorf("wait %d: %v, want in [%v, %v)", i, w, min/2, min/2+c)
		}
	}
}

// Loop's waits are real: the next stream starts no sooner than min/2
// after the last one ended. (Only a lower bound: a busy machine may wake
// it late.)
func TestLoopWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const min = 20 * time.Millisecond
	var starts, ends []time.Time
	Loop(ctx, min, min, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", nil, func(context.Context) (bool, error) {
		if starts = append(starts, time.Now()); len(starts) == 3 {
			cancel()
			return false, ctx.Err()
		}
		ends = append(ends, time.Now())
		return false, errors.New("ended")
	})
	if len(starts) != 3 {
		t.Fatalf("%d streams, want 3", len(starts))
	}
	for i, end := range ends {
		if w := starts[i+1].Sub(end); w < min/2 {
			t.Errorf("wait %d: %v, want at least %v", i, w, min/2)
		}
	}
}

// Once retired is set, the stream that runs is the last one, and none
// starts after a wait that was under way.
func TestLoopRetired(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var retired atomic.Bool
	streams := 0
	Loop(ctx, time.Millisecond, time.Millisecond, quiet, "test", &retired, func(context.Context) (bool, error) {
		if streams++; streams == 3 {
			retired.Store(true)
		}
		return true, errors.New("ended")
	})
	if ctx.Err() != nil || streams != 3 {
		t.Errorf("Loop ran %d streams (ctx: %v), want 3 and to return by itself", streams, ctx.Err())
	}
	streams = 0
	Loop(ctx, time.Millisecond, time.Millisecond, quiet, "test", &retired, func(context.Context) (bool, error) {
		streams++
		return true, nil
	})
	if streams != 0 {
		t.Errorf("a retired loop opened %d streams", streams)
	}
}

// A stream replaced by another process of the node's id (Aborted) does not
// reset the backoff, though the control plane had taken it: the two
// processes would otherwise swap the stream every few hundred milliseconds.
func TestLoopReplacedIsNoProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const min, ceiling = 10 * time.Millisecond, 80 * time.Millisecond
	streams := 0
	var got waits
	loop(ctx, min, ceiling, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", nil, func(context.Context) (bool, error) {
		if streams++; streams == 10 {
			cancel()
			return false, ctx.Err()
		}
		return true, status.Error(codes.Aborted, "discovery: node n1 opened a newer stream")
	}, got.wait)
	// Reset after each stream, every wait would lie under min/2+min. Grown,
	// the ceilings reach 80ms, and the odds that all of the later waits
	// stay under 15ms are below 1 in 10^6.
	if len(got) != 9 {
		t.Fatalf("%d waits, want 9", len(got))
	}
	longest := slices.Max(got)
	if longest < min+min/2 {
		t.Errorf("waits after replaced streams stayed under %v (longest %v): the backoff was reset", min+min/2, longest)
	}
}

// A stream that could not start because no connection was made says so,
// with the dial's own error, rather than that a stream ended.
func TestLoopLogsWhatHappened(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var log bytes.Buffer
	errs := []struct {
		progressed bool
		err        error
	}{
		{false, status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)},
		{true, status.Error(codes.Unavailable, "error reading from server: EOF")},
		{false, status.Error(codes.Unavailable, "the control plane is shutting down")},
	}
	n := 0
	Loop(ctx, time.Millisecond, time.Millisecond, slog.New(slog.NewTextHandler(&log, nil)), "command", nil, func(context.Context) (bool, error) {
		if n++; n > len(errs) {
			cancel()
			return false, ctx.Err()
		}
		return errs[n-1].progressed, errs[n-1].err
	})
	want := []string{
		`level=WARN msg="cannot reach the control plane; retrying the command stream" err="dial tcp 127.0.0.1:1: connect: connection refused"`,
		`level=WARN msg="command stream ended; reconnecting" err="rpc error: code = Unavailable desc = error reading from server: EOF"`,
		`level=WARN msg="command stream ended; reconnecting" err="rpc error: code = Unavailable desc = the control plane is shutting down"`,
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("log:\n%s\nwant %d lines", log.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("log line %d:\n%s\nwant it to hold\n%s", i, lines[i], w)
		}
	}
}

// TestHint: the errors a node logs when TLS to the control plane fails,
// or when --cp names an HTTP/1.1 server, as grpc words them (each seen from
// a real sluice-dp), get a hint that names the flag to fix; other errors
// get none.
func TestHint(t *testing.T) {
	for _, tt := range []struct{ err, want string }{
		{`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: EOF"`,
			"the control plane closed the connection before it spoke gRPC"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"Sluice CA\")"`,
			"the control plane's certificate is not signed by the CA of --ca"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate is valid for 127.0.0.1, ::1, not 127.0.0.2"`,
			"the control plane's certificate does not name the host this node dials in --cp"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`,
			"the control plane does not speak TLS"},
		{`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: remote error: tls: unknown certificate authority"`,
			"the control plane refused the node's certificate (--cert): its CA (--ca-cert) did not sign it"},
		{`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: remote error: tls: expired certificate"`,
			"the control plane refused the node's certificate (--cert): it has expired"},
		{`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: http2: failed reading the frame payload: http2: frame too large, note that the frame header looked like an HTTP/1.1 header"`,
			"the address in --cp answers HTTP/1.1: is it the control plane's --http address"},
		{`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:7070: connect: connection refused"`, ""},
	} {
		got := hint(errors.New(tt.err))
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("hint(%s) = %q, want %q…", tt.err, got, tt.want)
		}
	}
}
