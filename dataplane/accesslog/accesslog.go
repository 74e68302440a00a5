// Package accesslog writes a node's access log: one log/slog JSON line per
// HTTP request or TCP session.
//
// Logging never blocks traffic (DESIGN, dataplane principles). The request
// path decides first whether the request is sampled (Sample), copies what
// the line needs into a pooled entry and hands it to a bounded queue;
// one writer goroutine formats and writes the lines. When the queue is
// full — the writer fell behind, the disk is slow — the line is dropped
// and counted (Dropped), and the request goes on.
package accesslog

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultQueue is how many lines may wait for the writer.
const DefaultQueue = 4096

// Options configure a Log.
type Options struct {
	// Node is the node's id, written in every line.
	Node string
	// Sample is the share of requests and sessions logged, in (0, 1];
	// 0 means 1 (every one).
	Sample float64
	// Queue bounds the lines waiting for the writer; 0: DefaultQueue.
	Queue int
}

// Log is an access log. It implements meter.Log.
type Log struct {
	node    string
	all     bool    // Sample is 1: no coin to toss
	sample  float64 // Options.Sample
	queue   chan *entry
	dropped atomic.Uint64
	out     *bufio.Writer
	handler slog.Handler
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the writer is done
	once    sync.Once
}

// New starts a log writing to w. Close stops it.
func New(w io.Writer, opts Options) (*Log, error) {
	if opts.Sample == 0 {
		opts.Sample = 1
	}
	if !(opts.Sample > 0 && opts.Sample <= 1) {
		return nil, errors.New("accesslog: sample must be above 0 and at most 1")
	}
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	l := &Log{
		node: opts.Node, all: opts.Sample == 1, sample: opts.Sample,
		queue: make(chan *entry, opts.Queue),
		out:   bufio.NewWriterSize(w, 64<<10),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	l.handler = slog.NewJSONHandler(l.out, nil)
	go l.write()
	return l, nil
}

// Sample decides whether the request or session beginning now is logged:
// with probability Options.Sample.
func (l *Log) Sample() bool { return l.all || rand.Float64() < l.sample }

// entry is one line waiting for the writer: a copy of a meter.Exchange
// that owns its bytes.
type entry struct {
	listener, cluster, endpoint, proto string
	client                             netip.AddrPort
	end                                time.Time
	text                               []byte // method, host, path
	method, host                       int    // their ends in text
	status                             int
	bytesIn, bytesOut                  uint64
	connect, firstByte, total          time.Duration
	retries                            uint32
	cause                              sluicev1.CloseReason
}

var entries = sync.Pool{New: func() any { return new(entry) }}

// Log queues the line of x, an exchange of the listener named listener,
// or drops and counts it when the queue is full. It never blocks and, once
// the pool of entries is warm, does not allocate.
func (l *Log) Log(listener string, x *meter.Exchange) {
	e := entries.Get().(*entry)
	e.listener, e.endpoint, e.proto, e.client = listener, x.Endpoint, x.Proto, x.Client
	e.cluster = ""
	if x.Cluster != nil {
		e.cluster = x.Cluster.Name()
	}
	e.end = x.Start.Add(x.Total)
	e.text = append(append(append(e.text[:0], x.Method...), x.Host...), x.Path...)
	e.method, e.host = len(x.Method), len(x.Method)+len(x.Host)
	e.status, e.bytesIn, e.bytesOut = x.Status, x.BytesIn, x.BytesOut
	e.connect, e.firstByte, e.total = x.Connect, x.FirstByte, x.Total
	e.retries, e.cause = x.Retries, x.Cause
	select {
	case l.queue <- e:
	default:
		l.dropped.Add(1)
		entries.Put(e)
	}
}

// Dropped counts the lines dropped because the queue was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// Close writes the lines queued, flushes and stops the writer. Lines
// logged afterwards are dropped once the queue is full.
func (l *Log) Close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

// write formats and writes lines until Close, flushing whenever the queue
// is empty, so that a quiet node's lines are not held back in the buffer.
func (l *Log) write() {
	defer close(l.done)
	attrs := make([]slog.Attr, 0, 20)
	for {
		select {
		case e := <-l.queue:
			attrs = l.line(e, attrs)
			if len(l.queue) == 0 {
				l.out.Flush()
			}
		case <-l.stop:
			for len(l.queue) > 0 {
				attrs = l.line(<-l.queue, attrs)
			}
			l.out.Flush()
			return
		}
	}
}

// line writes the line of e and puts e back in the pool; attrs is a
// buffer it reuses and returns.
func (l *Log) line(e *entry, attrs []slog.Attr) []slog.Attr {
	attrs = e.attrs(attrs[:0], l.node)
	msg := "request"
	if e.proto == meter.ProtoTCP {
		msg = "session"
	}
	r := slog.NewRecord(e.end, slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	l.handler.Handle(context.Background(), r)
	entries.Put(e)
	return attrs
}

// attrs appends the fields of e's line to a.
func (e *entry) attrs(a []slog.Attr, node string) []slog.Attr {
	a = append(a, slog.String("node", node), slog.String("listener", e.listener),
		slog.String("client", e.client.String()), slog.String("proto", e.proto))
	if e.proto != meter.ProtoTCP {
		a = append(a,
			slog.String("method", string(e.text[:e.method])),
			slog.String("host", string(e.text[e.method:e.host])),
			slog.String("path", string(e.text[e.host:])),
			slog.Int("status", e.status))
	}
	if e.cluster != "" {
		a = append(a, slog.String("cluster", e.cluster), slog.String("endpoint", e.endpoint))
	}
	a = append(a, slog.Uint64("bytes_in", e.bytesIn), slog.Uint64("bytes_out", e.bytesOut))
	if e.connect > 0 {
		a = append(a, slog.Float64("connect_seconds", e.connect.Seconds()))
	}
	if e.firstByte > 0 {
		a = append(a, slog.Float64("first_byte_seconds", e.firstByte.Seconds()))
	}
	a = append(a, slog.Float64("total_seconds", e.total.Seconds()), slog.Uint64("retries", uint64(e.retries)))
	if e.cause != sluicev1.CloseReason_CLOSE_REASON_UNSPECIFIED {
		a = append(a, slog.String("cause", Cause(e.cause)))
	}
	return a
}

// Cause is how a close reason reads in the log, as in sluicectl conns:
// its name without the CLOSE_REASON_ prefix, in lower case, e.g.
// client_closed.
func Cause(r sluicev1.CloseReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "CLOSE_REASON_"))
}

var _ meter.Log = (*Log)(nil)
