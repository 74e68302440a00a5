// Package accesslog writes a node's access log: one JSON line per HTTP
// request or TCP session, in the shape of log/slog's JSONHandler (time,
// level, msg, then the fields), so that whatever reads slog's JSON reads
// it. The lines are encoded by hand (line.go) rather than through slog:
// the handler allocated for every line and took about 8% of a node's
// requests per second on a loaded two-core machine (BenchmarkHTTPMetered).
//
// Logging never blocks traffic (DESIGN, dataplane principles). The request
// path decides first whether the request is sampled (Sample), copies what
// the line needs into a pooled entry and hands it to a bounded queue;
// one writer goroutine formats and writes the lines. When the queue is
// full — the writer fell behind, the disk is slow — the line is dropped
// and counted (Dropped), and the request goes on. So are the lines of a
// write that fails (a full disk): the log goes on with the next ones.
package accesslog

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
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
	out     io.Writer
	// buf holds the lines the writer formatted and has not written yet;
	// cut says the last write ended inside a line. Only the writer
	// goroutine touches them.
	buf  []byte
	cut  bool
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the writer is done
	once sync.Once
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
		out:   w,
		buf:   make([]byte, 0, writeSize+4<<10),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
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
	rule                               string
	client, peer                       netip.AddrPort
	end                                time.Time
	text                               []byte // method, host, path, request id
	method, host, path                 int    // their ends in text
	status                             int
	grpc                               int // the gRPC status code plus one; 0: none
	bytesIn, bytesOut                  uint64
	connect, firstByte, total          time.Duration
	retries                            uint32
	cause                              sluicev1.CloseReason
	detail                             string
}

var entries = sync.Pool{New: func() any { return new(entry) }}

// Log queues the line of x, an exchange of the listener named listener,
// or drops and counts it when the queue is full. It never blocks and, once
// the pool of entries is warm, does not allocate.
func (l *Log) Log(listener string, x *meter.Exchange) {
	e := entries.Get().(*entry)
	e.listener, e.endpoint, e.proto, e.client, e.peer, e.rule = listener, x.Endpoint, x.Proto, x.Client, x.Peer, x.Rule
	e.cluster = ""
	if x.Cluster != nil {
		e.cluster = x.Cluster.Name()
	}
	e.end = x.Start.Add(x.Total)
	e.text = append(append(append(append(e.text[:0], x.Method...), x.Host...), x.Path...), x.RequestID...)
	e.method, e.host = len(x.Method), len(x.Method)+len(x.Host)
	e.path = e.host + len(x.Path)
	e.status, e.bytesIn, e.bytesOut = x.Status, x.BytesIn, x.BytesOut
	e.grpc = 0
	if code, ok := x.GRPCStatus(); ok {
		e.grpc = code + 1
	}
	e.connect, e.firstByte, e.total = x.Connect, x.FirstByte, x.Total
	e.retries, e.cause, e.detail = x.Retries, x.Cause, x.Detail
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

// WriteEvery is how often the writer takes the lines queued, writes and
// flushes them. The writer does not wait on the queue itself: a request
// that queued a line would then wake it, a scheduler round trip per
// request, and a write(2) per line would follow; both cost a busy node
// several percent of its requests per second (BenchmarkHTTPMetered).
// DefaultQueue holds what more than 100,000 requests a second queue
// meanwhile.
const WriteEvery = 20 * time.Millisecond

// write writes the lines queued every WriteEvery until Close.
func (l *Log) write() {
	defer close(l.done)
	tick := time.NewTicker(WriteEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-l.stop:
			l.drain()
			l.flush()
			return
		}
		if len(l.queue) > 0 {
			l.drain()
			l.flush()
		}
	}
}

// drain writes the lines queued now.
func (l *Log) drain() {
	for n := len(l.queue); n > 0; n-- {
		l.line(<-l.queue)
	}
}

// line formats the line of e into the lines gathered, writing them once
// they reach writeSize, and puts e back in the pool.
func (l *Log) line(e *entry) {
	l.buf = e.appendLine(l.buf, l.node)
	entries.Put(e)
	if len(l.buf) >= writeSize {
		l.flush()
	}
}

// writeSize is how many bytes of lines the writer gathers before it
// writes them, at most, between two ticks.
const writeSize = 64 << 10

// flush writes the lines gathered. A write that fails (a full disk)
// loses its lines, which are counted as dropped, and the log goes on
// with the next ones, which reach the file once it takes them again. A
// line the failed write cut short is ended first, so that the next line
// stays whole.
func (l *Log) flush() {
	if len(l.buf) == 0 {
		return
	}
	b := l.buf
	if l.cut {
		b = append(b, 0)
		copy(b[1:], b)
		b[0] = '\n'
	}
	n, err := l.out.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		lost := b[n:]
		if l.cut && n == 0 {
			lost = lost[1:] // the newline ending the cut line is not a line
		}
		l.dropped.Add(uint64(bytes.Count(lost, []byte{'\n'})))
		if n > 0 {
			l.cut = b[n-1] != '\n'
		}
	} else {
		l.cut = false
	}
	l.buf = b[:0]
}

var _ meter.Log = (*Log)(nil)
