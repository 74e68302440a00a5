package httpproxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Buffers of an exchange. The client read buffer holds request heads (a
// head that does not fit moves to a bigBufSize buffer for the exchange);
// the endpoint read buffer takes responses; the output buffer takes
// rewritten heads with the start of a body, and re-encoded chunks. An
// exchange in flight costs about 30 KiB, like HAProxy's two 16 KiB buffers
// per stream; one that copies a large body about 100 KiB (bulkBuffer,
// bulkRead), and one that re-frames a large chunked body about 165 KiB
// (bulkOutput too) while it comes fast. An idle connection holds none.
const (
	rbSize     = 4 << 10
	bbSize     = 16 << 10
	wbSize     = 8 << 10
	bigBufSize = 64<<10 + rbSize // a page multiple above maxHead
)

// exchange is everything a client connection needs while it has work: the
// buffers and the parse state of the current request and response. It is
// pooled, and a keep-alive connection gives it back while it waits for its
// next request (see clientConn.idleRead), which keeps an idle connection
// small.
type exchange struct {
	// Client read buffer: rb[rs:re] is read but unconsumed; scan is where
	// findHeadEnd resumes, relative to rs; headLen is the parsed head's
	// length at rs.
	rb                     []byte
	rs, re, scan, headLen  int
	headArmed              bool // the request head deadline is set
	parsed                 bool // the head at rs is in req already (inlineHead), for busy
	bb                     []byte
	bs, be, bscan, respLen int // endpoint read buffer, likewise
	// bbHead is the endpoint read buffer a big one replaced for copying
	// a large body (bulkBuffer), kept until the next exchange starts
	// (newResponse) or this one goes back: the response's fields point
	// into it.
	bbHead   []byte
	wb       []byte // output: rewritten heads and re-framed bodies
	headOut  int    // length of the request head at the start of wb (rebuildRequestHead)
	wbPooled []byte // wb's pooled buffer (a huge head may move wb to the heap)
	wbBulk   []byte // a big buffer wb moved to for re-framing a large chunked body (bulkOutput)

	// The request's fields are not needed once its head was rewritten
	// into the output buffer, so the response's reuse their storage.
	fields [maxFields]field
	req    Request
	resp   response
	chunk  chunkDecoder
	lr     io.LimitedReader
	pipe   pipeRun // a spliced body's (Linux)

	// Facts of the current exchange, kept because req's slices go stale
	// once rb is reused for the request body.
	headReq     bool               // method HEAD
	minor       uint8              // client's HTTP/1.minor
	keep        bool               // the client connection may stay open afterwards
	reqBody     uint8              // request body framing
	reqLeft     int64              // request body bytes not yet read from the client (bodyLength)
	bodyInWB    bool               // x.wb holds request body bytes after the head
	bodySent    bool               // some request body byte went to the endpoint: no replay
	respStarted bool               // some byte of the final response went to the client
	early       bool               // the endpoint answered before it took all of the request (answeredEarly)
	start       time.Time          // when the request was forwarded
	hard        time.Time          // when waiting on the endpoint becomes a timeout
	ep          *upstream.Endpoint // picked and not yet released
	epIn, epOut uint64             // bytes from and to ep, for its Stats
	connTimeout time.Duration      // connect timeout of ep's cluster
	reusable    bool               // the endpoint connection may be pooled after the body
	// epConn is the endpoint connection connect returned, and epRaw its
	// syscall.RawConn for raw reads and writes (nil when it is not plain
	// TCP); pooled with it, so that it is made once per connection.
	epConn net.Conn
	epRaw  syscall.RawConn
	// epArmed is the read and write deadline armEndpoint set on epConn,
	// while it is the deadline there; zero when that is not known. It
	// is pooled with the connection. The watches move epConn's read
	// deadline: watchAnswer zeroes it as it starts, endBodyWatch as
	// the body watch ends.
	epArmed time.Time
	private bool // the endpoint connection carried the client's PROXY header
	// epMSS is the maximum segment size of the endpoint connection's
	// socket, which sizes the reads of a large request body
	// (sendLengthBody); 0: not asked. askEpMSS has the next raw write to
	// the endpoint (sendAll) ask it, after a read that filled its room.
	epMSS    uint16
	askEpMSS bool
	// While an Expect: 100-continue request waits for its endpoint's
	// first answer, bodyWatch is closed when the watch of the client
	// ends, and bodyCame says the client sent its body (watchBody).
	bodyWatch chan struct{}
	bodyCame  atomic.Bool
	// While the request body streams (sendBody): answerDue is when a wait
	// for the client starts the watch of the endpoint connection answerBC
	// for an early answer (zero once it started, or when there is none);
	// answerWatch ends the watch, and answerCame says the endpoint sent.
	answerDue   time.Time
	answerBC    net.Conn
	answerWatch func()
	answerCame  atomic.Bool
	// When bodyStalled last armed a slice for a write of the request, and
	// epOut then.
	stallAt  time.Time
	stallOut uint64

	mx     meter.Exchange // the request as metered (meter.go)
	logBuf []byte         // mx's method, host and path when logged

	cfg   *Config              // the configuration current when the head was read
	limit sluicev1.CloseReason // why a connection limit or Drain ends the connection after this exchange; 0: none
}

var exchangePool = sync.Pool{New: func() any {
	x := new(exchange)
	x.req.fields, x.resp.fields = x.fields[:], x.fields[:]
	return x
}}

// getExchange returns an exchange with its buffers.
func getExchange() *exchange {
	x := exchangePool.Get().(*exchange)
	x.rb, x.bb = rbClass.get(), bbClass.get()
	x.wbPooled = wbClass.get()
	x.wb = x.wbPooled[:0]
	return x
}

func putExchange(x *exchange) {
	putBuffer(x.rb)
	putBuffer(x.bb)
	putBuffer(x.bbHead)
	wbClass.put(x.wbPooled)
	putBuffer(x.wbBulk)
	x.rb, x.bb, x.bbHead, x.wb, x.wbPooled, x.wbBulk = nil, nil, nil, nil, nil, nil
	x.rs, x.re, x.scan, x.headLen, x.headArmed, x.parsed = 0, 0, 0, 0, false, false
	x.bs, x.be, x.bscan, x.respLen = 0, 0, 0, 0
	x.lr.R = nil
	x.ep, x.epConn, x.epRaw, x.epArmed = nil, nil, nil, time.Time{}
	x.epMSS, x.askEpMSS = 0, false
	x.cfg = nil
	x.req.head, x.resp.head = nil, nil
	x.req.watch = nil // set again before each Pick; only a panic in one leaves it
	if cap(x.req.fields) > maxFields {
		// A head with more fields than usual grew its own: let it go.
		x.req.fields = x.fields[:]
	}
	x.req.forgetFailed()
	exchangePool.Put(x)
}

// putBuffer returns a read buffer to its class.
func putBuffer(b []byte) {
	if c := classOf(b); c != nil {
		c.put(b)
	}
}

// bulkBuffer gives the exchange a big endpoint read buffer, for copying a
// body of more than the one it has; what it holds unconsumed moves to the
// front of the big one. Each read and write moves four times as much,
// which on loopback cut the CPU per MiB by about 30% (see BENCHMARKS.md).
// The one it replaces first stays with the exchange, as the response's
// fields point into it; both go back at its end.
func (x *exchange) bulkBuffer() {
	if len(x.bb) >= bigBufSize {
		return
	}
	nb := bigClass.get()
	n := copy(nb, x.bb[x.bs:x.be])
	if x.bbHead == nil {
		x.bbHead = x.bb
	} else {
		putBuffer(x.bb) // a small one bulkBufferEnd took
	}
	x.bb, x.bs, x.be = nb, 0, n
}

// newResponse empties the endpoint read buffer for the next exchange's
// response, and gives back the buffer the last one's head stayed in
// (bbHead): nothing points into it any more. Within an exchange, then, a
// small endpoint read buffer beside bbHead is one bulkBufferEnd took, with
// body bytes only, which bulkBuffer may give back.
func (x *exchange) newResponse() {
	x.bs, x.be, x.bscan = 0, 0, 0
	if x.bbHead != nil {
		putBuffer(x.bbHead)
		x.bbHead = nil
	}
}

// bulkBufferEnd gives back the big buffers of bulkBuffer and bulkOutput,
// for a chunked response that now comes slowly (a stream of events after a
// burst): its unconsumed bytes move to a small buffer, if they fit.
func (x *exchange) bulkBufferEnd() {
	if len(x.bb) >= bigBufSize && x.bbHead != nil && x.be-x.bs <= bbSize {
		x.bb, x.bs, x.be = moveTo(bbClass, x.bb, x.bs, x.be)
	}
	x.bulkOutputEnd()
}

// bulkRead is bulkBuffer for the client read buffer, for a large request
// body. The one it replaces goes back at once: the request's fields,
// which point into it, are not used once its body streams.
func (x *exchange) bulkRead() {
	if len(x.rb) >= bigBufSize {
		return
	}
	x.rb, x.rs, x.re = moveTo(bigClass, x.rb, x.rs, x.re)
	x.scan = 0
}

// bulkReadEnd is bulkBufferEnd for a chunked request body and the
// client read buffer.
func (x *exchange) bulkReadEnd() {
	if len(x.rb) >= bigBufSize && x.re-x.rs <= rbSize {
		x.rb, x.rs, x.re = moveTo(rbClass, x.rb, x.rs, x.re)
	}
	x.bulkOutputEnd()
}

// bulkChunked chooses the buffers a chunked body goes on through, where
// its decoder needs more input, from the last read: filled, whether it
// filled the room it had; n, what it brought (bbSize before the first).
// request says whose body it is: the client's (rb) or the endpoint's
// (bb). Once 16 KiB came and a read filled its room, the body is a large
// one: it goes on through big buffers, a read and a write per 64 KiB
// rather than per 4 or 16 (see BENCHMARKS.md, "Uploads and chunked
// bodies"). Once a read brings less than 16 KiB, it comes slowly, maybe
// for long (a stream of events after a burst): the big buffers go back.
func (x *exchange) bulkChunked(filled bool, n int, request bool) {
	switch {
	case filled && x.chunk.data >= bbSize:
		if request {
			x.bulkRead()
		} else {
			x.bulkBuffer()
		}
		x.bulkOutput()
	case n < bbSize && x.wbBulk != nil:
		if request {
			x.bulkReadEnd()
		} else {
			x.bulkBufferEnd()
		}
	}
}

// bulkOutput moves the output buffer, which must be empty, to a big one,
// for re-framing a large chunked body: a write per read of a big buffer
// rather than per 8 KiB. It stays the exchange's output until
// bulkOutputEnd, or to its end.
func (x *exchange) bulkOutput() {
	if x.wbBulk != nil {
		return
	}
	x.wbBulk = bigClass.get()
	x.wb = x.wbBulk[:0]
}

// bulkOutputEnd gives the big output buffer back; the output, which must
// be empty, is the pooled one again.
func (x *exchange) bulkOutputEnd() {
	if x.wbBulk == nil {
		return
	}
	putBuffer(x.wbBulk)
	x.wbBulk = nil
	x.wb = x.wbPooled[:0]
}

// growRead moves the unconsumed bytes of a read buffer to the front, or to a
// big buffer when they fill it, so that a read has room. It returns the new
// buffer and window.
func growRead(buf []byte, s, e int) ([]byte, int, int) {
	if s > 0 {
		copy(buf, buf[s:e])
		return buf, 0, e - s
	}
	if e < len(buf) {
		return buf, s, e
	}
	if len(buf) >= bigBufSize {
		return buf, s, e // full: the caller's size check refuses the head
	}
	return moveTo(bigClass, buf, s, e)
}

// moveTo moves buf[s:e] to the front of a buffer of class c, gives buf
// back, and returns the new buffer and window.
func moveTo(c *bufClass, buf []byte, s, e int) ([]byte, int, int) {
	nb := c.get()
	n := copy(nb, buf[s:e])
	putBuffer(buf)
	return nb, 0, n
}
