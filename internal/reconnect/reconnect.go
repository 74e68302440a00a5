// Package reconnect keeps a node's streams to the control plane open:
// whenever one ends, it is opened again after a wait with exponential
// backoff and full jitter, so a fleet that lost its control plane does not
// reconnect in one wave.
package reconnect

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Default bounds of the wait between two streams. The ceiling is what a
// node may take to come back after its control plane restarts: at 15s a
// 5s restart left nodes away 15s more, and a `--wait` right after the
// restart found none of them. 10k nodes retrying at most every 5s dial
// about 4k times a second, which a control plane that is down refuses
// cheaply.
const (
	DefaultMin = 200 * time.Millisecond
	DefaultMax = 5 * time.Second
)

// Loop runs stream again and again until ctx ends, or until it finds
// retired set (nil: never) before a stream or after one ends: a node that
// drains keeps the streams it has but opens no new one. After a stream
// ends, Loop waits a random time between min/2 and a ceiling that starts at
// min and doubles after each wait, up to max; a stream that reports
// progress (the control plane answered) resets the ceiling. min and max of
// 0 or less take the defaults. what names the stream in the log line each
// end gets, e.g. "snapshot" or "command".
//
// A stream the control plane ended as Aborted was replaced by a newer
// stream of the node's id. From the process holding it, that is another
// process with the same id, and the two would take the stream from each
// other back and forth: so it is no progress, and it is logged as an error.
func Loop(ctx context.Context, min, max time.Duration, log *slog.Logger, what string, retired *atomic.Bool, stream func(context.Context) (progressed bool, err error)) {
	loop(ctx, min, max, log, what, retired, stream, Sleep)
}

// Sleep waits d, and reports false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// loop is Loop with the wait between two streams given: tests see the
// waits it chose rather than how long a busy machine took to wake it.
func loop(ctx context.Context, min, max time.Duration, log *slog.Logger, what string, retired *atomic.Bool, stream func(context.Context) (progressed bool, err error), wait func(context.Context, time.Duration) bool) {
	if min <= 0 {
		min = DefaultMin
	}
	if max <= 0 {
		max = DefaultMax
	}
	stop := func() bool { return retired != nil && retired.Load() }
	ceiling := min
	for ctx.Err() == nil && !stop() {
		progressed, err := stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if stop() {
			log.Info(what+" stream ended; not reconnecting, the node is draining", "err", err)
			return
		}
		level, msg := slog.LevelWarn, what+" stream ended; reconnecting"
		var shown any = err
		if status.Code(err) == codes.Aborted {
			progressed = false
			level, msg = slog.LevelError, what+" stream replaced by another process with this node id; node ids must be unique; reconnecting"
		} else if cause, ok := DialFailure(err); ok && !progressed {
			// No stream began: the connection under it was not made.
			msg, shown = "cannot reach the control plane; retrying the "+what+" stream", cause
		}
		if progressed {
			ceiling = min
		}
		d := min/2 + rand.N(ceiling)
		attrs := []any{"err", shown, "in", d.Round(time.Millisecond)}
		if h := hint(err); h != "" {
			attrs = append(attrs, "hint", h)
		}
		log.Log(ctx, level, msg, attrs...)
		if !wait(ctx, d) {
			return
		}
		ceiling = ceiling * 2
		if ceiling > max {
			ceiling = max
		}
	}
}

// DialFailure returns the dial error in err when the stream failed because
// no connection could be made (DialCause).
func DialFailure(err error) (cause string, ok bool) {
	if status.Code(err) != codes.Unavailable {
		return "", false
	}
	return DialCause(status.Convert(err).Message())
}

// DialCause returns the dial error in msg, the message of an UNAVAILABLE
// status of a call that made no connection, which grpc wraps as
// `connection error: desc = "transport: Error while dialing: dial tcp
// ...: connection refused"`. ok is false for any other message.
func DialCause(msg string) (cause string, ok bool) {
	_, after, ok := strings.Cut(msg, "Error while dialing: ")
	return strings.TrimSuffix(after, `"`), ok
}

// hints say what a stream's error most likely means to the person who
// started the node, by words of grpc's or crypto/tls's in it: the first
// that the error contains gives its hint.
var hints = []struct{ words, hint string }{
	// An HTTP/1.1 server answered the HTTP/2 preface: most likely the
	// control plane's dashboard, one port above its gRPC one by default.
	{"looked like an HTTP/1.1 header",
		"the address in --cp answers HTTP/1.1: is it the control plane's --http address (its dashboard)? --cp takes its gRPC --listen address, 127.0.0.1:7070 by default"},
	// The control plane closed the connection before its HTTP/2 preface:
	// what a TLS server does to a plaintext client.
	{"error reading server preface: EOF",
		"the control plane closed the connection before it spoke gRPC, as one with TLS (--tls-cert) does to a node without --ca, --cert and --key"},
	{"x509: certificate signed by unknown authority",
		"the control plane's certificate is not signed by the CA of --ca: give the CA certificate of the control plane's --ca-cert (the ca.crt that 'sluicectl cert issue' writes beside the node's certificate)"},
	{"x509: certificate is valid for",
		"the control plane's certificate does not name the host this node dials in --cp: dial one of the names it has, or make the certificate for this one (sluice-cp init-ca --hosts)"},
	{"first record does not look like a TLS handshake",
		"the control plane does not speak TLS: start it with --tls-cert, or start the node without --ca, --cert and --key"},
	{"remote error: tls: unknown certificate authority",
		"the control plane refused the node's certificate (--cert): its CA (--ca-cert) did not sign it; issue one with 'sluicectl cert issue' against this control plane"},
	{"remote error: tls: expired certificate",
		"the control plane refused the node's certificate (--cert): it has expired or is not valid yet; issue a new one with 'sluicectl cert issue' and write it over the files, which the node rereads at its next reconnect"},
}

// hint says what a stream's error most likely means, or "".
func hint(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, h := range hints {
		if strings.Contains(msg, h.words) {
			return h.hint
		}
	}
	return ""
}

// Register sends first on st, a stream just opened to the control plane,
// and waits for the headers the control plane sends once it registered the
// stream. It returns nil once it did, or else why the control plane refused
// or ended the stream (a certificate that names another node, a service it
// lacks, a shutdown): the status, which only Recv gives. The first Send may
// fail with io.EOF before it arrives, and grpc's Header reports no error for
// such a stream, only a nil header. A stream not registered made no
// progress: it must not reset Loop's backoff.
func Register[Req, Resp any](st grpc.BidiStreamingClient[Req, Resp], first *Req) error {
	if err := st.Send(first); err != nil {
		if err == io.EOF {
			_, err = st.Recv()
		}
		return err
	}
	if md, _ := st.Header(); md == nil {
		_, err := st.Recv()
		return err
	}
	return nil
}
