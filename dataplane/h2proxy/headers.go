package h2proxy

import (
	"encoding/binary"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// A request whose header block holds a connection-specific field
// (Connection, Proxy-Connection, Keep-Alive, Transfer-Encoding, Upgrade),
// or TE with a value other than "trailers", is malformed, and RFC 9113
// §8.2.2, §8.1.1 make that a stream error of type PROTOCOL_ERROR:
// RST_STREAM.
// net/http's server answers it 400 instead, from a handler of its own
// (h2_bundle.go, processHeaders: checkValidHTTP2RequestHeaders, then
// new400Handler), so the reset cannot come from Sluice's handler, which
// never sees the request. frameReader makes net/http itself reset the
// stream: headerCheck decodes every header block on its way to net/http
// with a decoder of its own that mirrors net/http's (same dynamic table
// size, string and list limits, fed the same blocks in the same order, so
// the two dynamic tables stay equal), and when net/http would take the
// 400 path, changes the frames so that it takes a path that ends in
// RST_STREAM with PROTOCOL_ERROR instead, without changing a byte of the
// header block itself:
//
//   - When the field is in the HEADERS frame (a block in one frame, as
//     nearly every client sends it), the frame gets the PRIORITY flag and
//     a dependency on its own stream. processHeaders opens the stream,
//     then checkPriority refuses the self-dependency (RFC 9113 §5.3.1) as
//     a stream error of type PROTOCOL_ERROR: RST_STREAM, before the
//     request is built, and the stream is closed as any reset stream is,
//     so DATA the client sent behind the HEADERS is discarded as for any
//     reset stream (its connection window given back). Padding is
//     dropped; a frame that would outgrow SETTINGS_MAX_FRAME_SIZE is
//     split into HEADERS and a CONTINUATION.
//   - When it only comes in a CONTINUATION frame (the HEADERS frame has
//     gone on), one more CONTINUATION ends the block, holding a literal
//     field without indexing (so the dynamic table is untouched) whose
//     name, "X", is not lowercase. net/http's framer refuses the name as
//     a stream error of type PROTOCOL_ERROR once the block ends
//     (readMetaFrame: validWireHeaderFieldName). The stream is not opened
//     then: should the client send DATA on it, net/http ends the
//     connection (DATA on an idle stream), as it does behind any header
//     block its framer refuses; RFC 9113 §5.4 lets any stream error be
//     treated as a connection error.
//
// The reader cannot tell a trailer block (HEADERS on an open stream) from
// a request's, and need not: net/http ignores a trailer's priority and
// keeps these fields out of trailers itself (processTrailerHeaders resets
// the stream on a declared trailer that ValidTrailerHeader refuses, and
// drops undeclared ones); only a trailer block whose field comes in a
// CONTINUATION is now reset even where net/http would have dropped it,
// as the RFC asks. Where net/http would not reach the 400 handler (an
// invalid field, a header list past its limit: a stream error or 431),
// nothing is changed. Where net/http will end the connection (a decoding
// error, frames out of order, a frame past the size limit), inspection
// stops and every later byte passes as it comes.
type headerCheck struct {
	dec     *hpack.Decoder
	maxList uint32 // net/http's header list limit (its framer's MaxHeaderListSize)
	// cont is the stream whose header block goes on in CONTINUATION
	// frames, 0 when none does.
	cont uint32
	// handled: the block being read already has its HEADERS frame
	// rewritten.
	handled bool

	// What net/http's framer makes of the block so far (readMetaFrame).
	remain     uint32 // header list bytes left
	sawRegular bool
	invalid    bool // a field net/http refuses: a stream error
	truncated  bool // past the list limit: net/http answers 431
	// What checkValidHTTP2RequestHeaders would say of the fields kept.
	connField bool
	te        int
	badTE     bool
}

// hpackTableSize is the dynamic table size net/http's decoder has and its
// SETTINGS_HEADER_TABLE_SIZE: ServeConn sets it, headerCheck mirrors it.
const hpackTableSize = 4096

const (
	frameHeaders      = 0x1
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	flagPadded        = 0x8
	flagPriority      = 0x20
	priorityLen       = 5
)

// badFieldMarker is a literal header field without indexing with a new
// name (RFC 7541 §6.2.2): name "X", empty value.
var badFieldMarker = []byte{0x00, 0x01, 'X', 0x00}

// headerRoom is what a rewrite may add to a frame: a CONTINUATION header
// and a priority field or badFieldMarker.
const headerRoom = frameHeaderLen + priorityLen

// newHeaderCheck mirrors the decoder of a net/http server whose
// MaxHeaderBytes is maxHeaderBytes and whose MaxDecoderHeaderTableSize is
// hpackTableSize.
func newHeaderCheck(maxHeaderBytes int) *headerCheck {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	// http2adjustHTTP1MaxHeaderSize: room for 10 fields of 32 bytes.
	c := &headerCheck{maxList: uint32(maxHeaderBytes + 10*32)}
	c.dec = hpack.NewDecoder(hpackTableSize, c.emit)
	// maxHeaderStringLen: the list limit, as an int.
	c.dec.SetMaxStringLength(int(c.maxList))
	return c
}

// order mirrors the framer's checks on a frame header (ReadFrameHeader:
// its length, checkFrameOrder): it reports whether the frame is part of
// a header block, to be held and passed to check, and whether inspection
// goes on (net/http ends the connection on a frame past its size limit,
// and on a header block interrupted or a CONTINUATION out of place).
func (c *headerCheck) order(typ byte, stream uint32, length int) (hold, ok bool) {
	if length > maxFrame {
		return false, false
	}
	if c.cont != 0 {
		return true, typ == frameContinuation && stream == c.cont
	}
	switch typ {
	case frameHeaders:
		return true, true
	case frameContinuation:
		return false, false
	}
	return false, true
}

// check decodes the header block fragment of f, a whole HEADERS or
// CONTINUATION frame that order had held, and returns the frames to hand
// on in its place: f itself, or f rewritten in place, within cap(f) (at
// least headerRoom more than len(f)). ok is false when net/http will end
// the connection, and inspection stops (f is returned as it came).
func (c *headerCheck) check(f []byte) (out []byte, ok bool) {
	flags := f[4]
	stream := binary.BigEndian.Uint32(f[5:]) & (1<<31 - 1)
	if f[3] == frameContinuation {
		return c.continuation(f, flags, stream)
	}
	return c.headers(f, flags, stream)
}

// headers checks a HEADERS frame, parsed as http2parseHeadersFrame does.
func (c *headerCheck) headers(f []byte, flags byte, stream uint32) ([]byte, bool) {
	if stream == 0 {
		return f, false // a connection error
	}
	p := f[frameHeaderLen:]
	pad, weight := 0, byte(15) // weight 16, the default
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return f, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < priorityLen {
			return f, false
		}
		weight, p = p[4], p[priorityLen:]
	}
	if len(p) < pad {
		// A stream error, with the block left undecoded: net/http reads
		// the CONTINUATION frames that may follow as frames of their own,
		// which it ignores; following that is not worth it.
		return f, flags&flagEndHeaders != 0
	}
	frag := p[:len(p)-pad]
	c.begin()
	if !c.decode(frag, flags) {
		return f, false
	}
	if flags&flagEndHeaders == 0 {
		c.cont = stream
	}
	if !c.malformed() {
		return f, true
	}
	// A field that comes later may yet make the block invalid (net/http
	// refuses it by itself) or too long (which net/http would have
	// answered 431, and now resets too).
	c.handled = true
	return selfDependent(f, flags, stream, weight, frag), true
}

// continuation checks a CONTINUATION frame of the block on c.cont (order
// saw to that), as the loop of readMetaFrame reads it.
func (c *headerCheck) continuation(f []byte, flags byte, stream uint32) ([]byte, bool) {
	if c.invalid {
		return f, false // a CONTINUATION after an invalid field: a connection error
	}
	if !c.decode(f[frameHeaderLen:], flags) {
		return f, false
	}
	if flags&flagEndHeaders == 0 || c.handled || !c.malformed() {
		return f, true
	}
	// f ends the block: it goes on without END_HEADERS, and a
	// CONTINUATION holding badFieldMarker ends it.
	f[4] = flags &^ flagEndHeaders
	n := len(f)
	f = f[:n+frameHeaderLen+len(badFieldMarker)]
	putFrameHeader(f[n:], len(badFieldMarker), frameContinuation, flagEndHeaders, stream)
	copy(f[n+frameHeaderLen:], badFieldMarker)
	return f, true
}

// begin starts a header block, as readMetaFrame does.
func (c *headerCheck) begin() {
	c.handled = false
	c.remain = c.maxList
	c.sawRegular, c.invalid, c.truncated = false, false, false
	c.connField, c.te, c.badTE = false, 0, false
	c.dec.SetEmitEnabled(true)
}

// decode feeds a fragment to the decoder, and reports false where
// net/http ends the connection: a fragment more than twice the list bytes
// left, a decoding error, a block that ends within a field.
func (c *headerCheck) decode(frag []byte, flags byte) bool {
	if int64(len(frag)) > int64(2*c.remain) {
		return false
	}
	if _, err := c.dec.Write(frag); err != nil {
		return false
	}
	if flags&flagEndHeaders != 0 {
		c.cont = 0
		if c.dec.Close() != nil {
			return false
		}
	}
	return true
}

// emit is the decoder's, and does what the one of readMetaFrame does,
// noting what checkValidHTTP2RequestHeaders looks at of the fields kept.
// Once a field is invalid, or the list too long, net/http stops emitting,
// and the decoder then leaves literal fields that are not indexed
// undecoded: c.dec does the same, so that a string net/http does not
// decode fails neither decoder.
func (c *headerCheck) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		c.invalid = true
	}
	if strings.HasPrefix(hf.Name, ":") {
		if c.sawRegular {
			c.invalid = true
		}
	} else {
		c.sawRegular = true
		if !validWireName(hf.Name) {
			c.invalid = true
		}
	}
	if c.invalid {
		c.dec.SetEmitEnabled(false)
		return
	}
	size := hf.Size()
	if size > c.remain {
		c.dec.SetEmitEnabled(false)
		c.truncated = true
		c.remain = 0
		return
	}
	c.remain -= size
	switch hf.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		c.connField = true
	case "te":
		c.te++
		if c.te > 1 || hf.Value != "trailers" && hf.Value != "" {
			c.badTE = true
		}
	}
}

// malformed reports whether net/http, given the block so far, would
// answer it with new400Handler.
func (c *headerCheck) malformed() bool {
	return (c.connField || c.badTE) && !c.invalid && !c.truncated
}

// validWireName is http2validWireHeaderFieldName: a token, in lower case.
func validWireName(v string) bool {
	if len(v) == 0 {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// selfDependent rewrites f, a HEADERS frame whose fragment is frag, in
// place to carry frag alone (no padding) behind a priority field that
// makes the stream depend on itself, split in a HEADERS and a
// CONTINUATION frame when that would outgrow maxFrame.
func selfDependent(f []byte, flags byte, stream uint32, weight byte, frag []byte) []byte {
	const start = frameHeaderLen + priorityLen
	n := len(frag)
	f = f[:start+n]
	copy(f[start:], frag) // frag lies within f: copy moves it
	binary.BigEndian.PutUint32(f[frameHeaderLen:], stream)
	f[frameHeaderLen+4] = weight
	flags = flags&^flagPadded | flagPriority
	if priorityLen+n <= maxFrame {
		putFrameHeader(f, priorityLen+n, frameHeaders, flags, stream)
		return f
	}
	first := maxFrame - priorityLen
	putFrameHeader(f, maxFrame, frameHeaders, flags&^flagEndHeaders, stream)
	f = f[:start+n+frameHeaderLen]
	copy(f[start+first+frameHeaderLen:], f[start+first:start+n])
	putFrameHeader(f[start+first:], n-first, frameContinuation, flags&flagEndHeaders, stream)
	return f
}

// putFrameHeader writes a frame header at the start of b.
func putFrameHeader(b []byte, length int, typ, flags byte, stream uint32) {
	b[0], b[1], b[2], b[3], b[4] = byte(length>>16), byte(length>>8), byte(length), typ, flags
	binary.BigEndian.PutUint32(b[5:], stream)
}
