package httpproxy

import "errors"

// Serving a request from inside the idle wait.
//
// A keep-alive connection waits for its next request in one raw read of
// its socket (idleRead, readFn). Go's RawConn.Read forgets the socket's
// readiness when it starts, so its function must read first, and a read
// just after a response nearly always finds nothing: the client has not
// sent its next request yet. That failed read was one system call in
// five on the L7 path (BENCHMARKS.md, "System calls per request").
//
// So a connection that may park serves the request that ended its wait
// without leaving the read: readFn hands it to serveInline, which runs the
// exchange and then asks to wait again. Readiness that came in the
// meantime is kept, as the read has not ended, and with none the wait
// begins without a read; as HAProxy, the node then reads only what the
// poller said was there.
//
// Inside the read, the connection's read lock is held, so nothing served
// there may read from the client: only requests complete in the read
// buffer, with no body or all of it buffered, that do not ask to switch
// protocols. Everything else (a partial head, a body to stream, a tunnel,
// a head that does not parse) is left in the buffer for busy, which serves
// it outside the read.

// errServedEnded says that serveInline served a request after which the
// connection ends; cc.reason says why.
var errServedEnded = errors.New("httpproxy: connection ended after a request")

// serveInline serves the requests in cc.x, from inside readFn, while each
// is a simple one (inlineHead), and then makes the connection idle again.
// It returns true when the connection waits for its next request; false
// when it ended (cc.rawErr is errServedEnded), or when the buffer holds
// bytes for busy. The connection is busy (leaveIdle) when it is called.
func (cc *clientConn) serveInline() (idle bool) {
	cc.inline = true
	defer func() {
		cc.inline = false
		if p := recover(); p != nil {
			cc.panicked(p)
			cc.rawErr = errServedEnded
			idle = false
		}
	}()
	// The frames below the exchange stay small: a connection's goroutine
	// waits for its endpoint with them on its stack, and new goroutines
	// start with a stack as large as the average the garbage collector
	// sees (see BENCHMARKS.md, the idle L7 memory row).
	for x := cc.x; x.rs < x.re; {
		if !cc.inlineHead() {
			cc.rawErr = nil
			return false
		}
		if !cc.exchangeMetered() {
			cc.rawErr = errServedEnded
			return false
		}
	}
	if !cc.idleAgain() {
		cc.rawErr = errServedEnded
		return false
	}
	return true
}

// idleAgain makes the connection idle after serveInline served what it
// read, and arms the wait for the next request. It returns false when the
// connection ends instead (cc.reason says why).
func (cc *clientConn) idleAgain() bool {
	if !cc.planIdle() {
		return false
	}
	cc.armReadAt(cc.info.Start.Add(cc.idleUntil), cc.idleSlack)
	if !cc.enterIdle() {
		cc.reason = cc.srv.drainedAs()
		return false
	}
	// Wait without the buffers, as readFn does.
	putExchange(cc.x)
	cc.x = nil
	return true
}

// mayReadClient panics when called while serving inline, as a read of the
// client there would wait forever for the lock the idle wait's read holds:
// a bug in inlineHead, which the panic turns into the end of only this
// connection (see serveInline).
func (cc *clientConn) mayReadClient() {
	if cc.inline {
		panic("httpproxy: a request served inline reads from the client")
	}
}

// inlineHead parses the request head at the start of the read buffer and
// reports whether serveInline may serve the request: its head is complete,
// it parses, no byte of it is left to read from the client and it does not
// ask to switch protocols. Otherwise busy serves it: from the start when
// the head is not complete, or does not parse (then busy answers the
// error); with the head as parsed here (x.parsed) when it is.
func (cc *clientConn) inlineHead() bool {
	x := cc.x
	b := x.rb[x.rs:x.re]
	if b[0] == '\r' || b[0] == '\n' {
		return false // empty lines before it: readRequest's to count
	}
	lim := &cc.srv.cfg.Load().lim
	end, next := findHeadEnd(b, x.scan)
	if end <= 0 {
		x.scan = next
		return false
	}
	if end > lim.bytes {
		return false
	}
	if x.req.parseLimited(b[:end], lim) != nil {
		return false
	}
	x.scan = 0
	x.headLen = end
	req := &x.req
	if req.tunnel || req.body == bodyChunked || req.body == bodyLength && req.contentLength > int64(len(b)-end) {
		x.parsed = true
		return false
	}
	return true
}
