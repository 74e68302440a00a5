package httpproxy

import (
	"errors"
	"math"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// HeadEnd, HeadScreener and ChunkScanner are for an engine that reads
// HTTP/1.x requests with a parser of its own (the HTTP/2 engine serves the
// HTTP/1.x clients of a translating listener with net/http): with them it
// frames each request of a connection as this engine does, and refuses
// what this engine refuses, before its parser reads a byte of it. Two
// parsers that frame one stream of requests differently are what request
// smuggling needs.

// unlimited are head limits that never refuse, for a HeadScreener given
// no Config.
var unlimited = headLimits{bytes: math.MaxInt, fields: math.MaxInt, uri: math.MaxInt}

// limitsOf are cfg's head limits (cfg as Server.Config returns it), or
// none for a nil cfg.
func limitsOf(cfg *Config) *headLimits {
	if cfg == nil {
		return &unlimited
	}
	return &cfg.lim
}

// HeadEnd returns the end of the request head that starts at b[0] (past
// its empty line), or -1 when b does not hold all of it yet.
func HeadEnd(b []byte) int {
	end, _ := findHeadEnd(b, 0)
	return end
}

// maxEmptyLineBytes bounds the CR and LF bytes ignored before a request
// line (RFC 9112 §2.2); more are refused (errLeadingLines).
const maxEmptyLineBytes = 8

// HeadScreener parses request heads as this engine parses a client's, held
// to the head limits of a listener's Config (MaxHeaderBytes,
// MaxHeaderCount, MaxURILength) as this engine holds them, with the same
// answers. Its zero value is ready, and it keeps its storage from head to
// head.
type HeadScreener struct {
	r       Request
	empties int         // CR and LF bytes skipped before the next head
	partial partialHead // of the head under way (Partial)
}

// SkipEmpty returns how many bytes at the start of b are empty lines before
// a request line, to drop, as this engine ignores them; err refuses more of
// them than it ignores, counted since the last head.
func (s *HeadScreener) SkipEmpty(b []byte) (n int, err error) {
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	if s.empties += n; s.empties > maxEmptyLineBytes {
		return n, &foreignError{errLeadingLines}
	}
	return n, nil
}

// Partial checks b, the start of a request head not whole yet (no empty
// line before it), as this engine does while a head arrives: err refuses
// a head already longer than cfg allows (431, or 414 when its target is),
// or a request line this engine refuses (HTTP/0.9's "GET /", a version
// it does not speak), at once rather than once the head ends or its time
// runs out (partialHead). A nil cfg sets no limits.
func (s *HeadScreener) Partial(b []byte, cfg *Config) error {
	if e := s.partial.check(b, limitsOf(cfg)); e != nil {
		return &foreignError{e}
	}
	return nil
}

// Screen parses head, one request head (request line through the empty
// line, no empty line before it), held to cfg's limits (none for a nil
// cfg). body is the declared length of the request's body, -1 for a
// chunked one, 0 for none. err is this engine's refusal; StatusOf gives
// its status and text.
func (s *HeadScreener) Screen(head []byte, cfg *Config) (body int64, err error) {
	r := &s.r
	s.empties, s.partial = 0, partialHead{}
	lim := limitsOf(cfg)
	if len(head) > lim.bytes {
		return 0, &foreignError{tooLarge(head, lim)}
	}
	defer func() { r.head = nil }() // keeps no reference to the caller's bytes
	if e := r.parseLimited(head, lim); e != nil {
		return 0, &foreignError{e}
	}
	return r.ContentLength(), nil
}

// ChunkScanner finds the end of a chunked body (its trailers included) as
// this engine reads one, refusing the framing it refuses. The zero value
// is ready for a body.
type ChunkScanner struct {
	d    chunkDecoder
	sink []byte // where the decoder copies the data, which is dropped
}

// Scan consumes what it can of in, the next bytes of the body: its first n
// bytes belong to the body, and done says the body ended with them. What
// is left of in is either the next message's (done) or an incomplete step
// of the body's framing, to scan again with the bytes that follow. err is
// framing this engine refuses.
func (s *ChunkScanner) Scan(in []byte) (n int, done bool, err error) {
	if s.sink == nil {
		s.sink = make([]byte, 0, 4<<10) // kept by a connection: small
	}
	for !s.d.done() {
		k, _, err := s.d.decode(in[n:], s.sink[:0], false)
		n += k
		if err != nil {
			return n, false, err
		}
		if k == 0 {
			return n, false, nil
		}
	}
	return n, true, nil
}

// Reset readies s for the next body.
func (s *ChunkScanner) Reset() { s.d.reset() }

// ErrHeadTimeout is this engine's refusal of a request head not complete
// within RequestHeaderTimeout of its first byte, for the screening engine
// to answer (AppendRefusal).
var ErrHeadTimeout error = &foreignError{errRequestTimeout}

// AppendRefusal appends to b this engine's answer to err, a refusal of
// HeadScreener's or ErrHeadTimeout, as the last bytes of a connection
// (Connection: close); the answer to a HEAD request has no body. It
// returns the answer's status and the close reason the connection ends
// with. Any other error gets a 400.
func AppendRefusal(b []byte, err error, head bool) ([]byte, int, sluicev1.CloseReason) {
	e := errMalformed
	var f *foreignError
	if errors.As(err, &f) {
		e = f.e
	}
	return appendStatusResponse(b, e, nil, 1, false, head), e.status, e.reason
}
