package h2proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Server is a net/http HTTP/2 server configured as ServeConn configures
// one, reading its connections through a frameReader, with a handler that
// answers 200 with the request's TE and X-Echo fields.
func h2Server(t *testing.T, maxHeaderBytes int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["X-Te"] = r.Header["Te"]
			w.Header()["X-Echo"] = r.Header["X-Echo"]
			io.Copy(io.Discard, r.Body)
			w.Write([]byte("ok"))
		}),
		Protocols:      &protos,
		HTTP2:          h2Config(DefaultMaxConcurrentStreams),
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       discard,
	}
	go hs.Serve(readerListener{ln, maxHeaderBytes})
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// readerListener hands out its connections as ServeConn hands them to
// net/http: behind a frameReader.
type readerListener struct {
	net.Listener
	maxHeaderBytes int
}

func (l readerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newClientConn(&countConn{Conn: c}, l.maxHeaderBytes, true), nil
}

// h2Client is a client connection made of frames by hand.
type h2Client struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	cl.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cl.enc = hpack.NewEncoder(&cl.buf)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, h2Preface); err != nil {
		t.Fatal(err)
	}
	if err := cl.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return cl
}

// block HPACK-encodes a GET of / followed by fields (name, value pairs),
// with the connection's encoder.
func (cl *h2Client) block(fields ...string) []byte {
	return cl.blockOf("GET", fields...)
}

// blockOf HPACK-encodes a request of / with method, followed by fields
// (name, value pairs), with the connection's encoder.
func (cl *h2Client) blockOf(method string, fields ...string) []byte {
	cl.buf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "example.com"}, {":path", "/"}} {
		cl.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i < len(fields); i += 2 {
		cl.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(cl.buf.Bytes())
}

// get sends a GET whose header block holds fields, in one HEADERS frame.
func (cl *h2Client) get(stream uint32, fields ...string) {
	cl.t.Helper()
	cl.headers(http2.HeadersFrameParam{StreamID: stream, BlockFragment: cl.block(fields...), EndStream: true, EndHeaders: true})
}

func (cl *h2Client) headers(p http2.HeadersFrameParam) {
	cl.t.Helper()
	if err := cl.fr.WriteHeaders(p); err != nil {
		cl.t.Fatal(err)
	}
}

// answer is what came back on a stream: a response, a reset, or the end
// of the connection.
type answer struct {
	status, te, echo string
	rst              http2.ErrCode
	goAway           bool
}

func (a answer) String() string {
	switch {
	case a.goAway:
		return fmt.Sprintf("GOAWAY %v", a.rst)
	case a.status != "":
		return fmt.Sprintf("%s te=%q echo=%q", a.status, a.te, a.echo)
	}
	return fmt.Sprintf("RST_STREAM %v", a.rst)
}

var (
	resetProtocol = answer{rst: http2.ErrCodeProtocol}
	ok200         = answer{status: "200"}
)

// wait reads frames until stream is answered or reset, or the connection
// ends.
func (cl *h2Client) wait(stream uint32) answer {
	cl.t.Helper()
	for {
		f, err := cl.fr.ReadFrame()
		if err != nil {
			cl.t.Fatalf("stream %d: reading: %v", stream, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				cl.fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			return answer{goAway: true, rst: f.ErrCode}
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				return answer{rst: f.ErrCode}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				return answer{status: f.PseudoValue("status"), te: value(f, "x-te"), echo: value(f, "x-echo")}
			}
		}
	}
}

func value(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// expect checks what stream got, and that the connection still serves:
// a plain GET on the next stream is answered 200.
func (cl *h2Client) expect(stream uint32, want answer) {
	cl.t.Helper()
	if got := cl.wait(stream); got != want {
		cl.t.Fatalf("stream %d: got %v, want %v", stream, got, want)
	}
	cl.get(stream+2, "x-echo", "next")
	if got := cl.wait(stream + 2); got != (answer{status: "200", echo: "next"}) {
		cl.t.Fatalf("stream %d after stream %d: got %v, want 200", stream+2, stream, got)
	}
}

// TestMalformedHeadersReset: a request with a connection-specific field,
// or TE other than "trailers", is reset with PROTOCOL_ERROR (RFC 9113
// §8.2.2, §8.1.1) where net/http alone answers 400, and the connection
// goes on serving; what net/http accepts reaches the handler as before.
func TestMalformedHeadersReset(t *testing.T) {
	addr := h2Server(t, 0)
	for _, tt := range []struct {
		name   string
		fields []string
		want   answer
	}{
		{"connection", []string{"connection", "keep-alive"}, resetProtocol},
		{"keep-alive", []string{"keep-alive", "timeout=5"}, resetProtocol},
		{"proxy-connection", []string{"proxy-connection", "keep-alive"}, resetProtocol},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}, resetProtocol},
		{"upgrade", []string{"upgrade", "websocket"}, resetProtocol},
		{"connection last", []string{"accept", "*/*", "x-echo", "a", "connection", "close"}, resetProtocol},
		{"te gzip", []string{"te", "gzip"}, resetProtocol},
		{"te trailers deflate", []string{"te", "trailers, deflate"}, resetProtocol},
		{"te twice", []string{"te", "trailers", "te", "trailers"}, resetProtocol},
		{"te Trailers", []string{"te", "Trailers"}, resetProtocol},
		{"te trailers", []string{"te", "trailers"}, answer{status: "200", te: "trailers"}},
		{"te empty", []string{"te", ""}, ok200},
		{"similar names", []string{"connections", "x", "x-upgrade", "y", "tee", "gzip", "x-echo", "z"}, answer{status: "200", echo: "z"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := dialH2(t, addr)
			cl.get(1, tt.fields...)
			cl.expect(1, tt.want)
			// The same fields again, from the dynamic table now.
			cl.get(5, tt.fields...)
			cl.expect(5, tt.want)
		})
	}
}

// TestMalformedHeadersFraming: the reset comes however the block is
// framed: padded, with a priority, split across CONTINUATION frames
// (the field in the HEADERS frame, in a CONTINUATION, across the two),
// or filling a frame to SETTINGS_MAX_FRAME_SIZE.
func TestMalformedHeadersFraming(t *testing.T) {
	addr := h2Server(t, 0)
	prio := http2.PriorityParam{StreamDep: 0, Exclusive: true, Weight: 200}
	t.Run("padded", func(t *testing.T) {
		cl := dialH2(t, addr)
		cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block("upgrade", "h2c"), EndStream: true, EndHeaders: true, PadLength: 17})
		cl.expect(1, resetProtocol)
	})
	t.Run("priority", func(t *testing.T) {
		cl := dialH2(t, addr)
		cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block("te", "gzip"), EndStream: true, EndHeaders: true, Priority: prio})
		cl.expect(1, resetProtocol)
	})
	t.Run("padded priority", func(t *testing.T) {
		cl := dialH2(t, addr)
		cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block("connection", "close"), EndStream: true, EndHeaders: true, PadLength: 255, Priority: prio})
		cl.expect(1, resetProtocol)
	})
	t.Run("valid padded priority", func(t *testing.T) {
		cl := dialH2(t, addr)
		cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block("te", "trailers"), EndStream: true, EndHeaders: true, PadLength: 3, Priority: prio})
		cl.expect(1, answer{status: "200", te: "trailers"})
	})

	// split sends block in a HEADERS frame of its first n bytes and
	// CONTINUATION frames of at most m bytes.
	split := func(cl *h2Client, stream uint32, block []byte, n, m int, padded bool) {
		t.Helper()
		p := http2.HeadersFrameParam{StreamID: stream, BlockFragment: block[:n], EndStream: true, EndHeaders: n == len(block)}
		if padded {
			p.PadLength = 8
		}
		cl.headers(p)
		for rest := block[n:]; len(rest) > 0; {
			k := min(m, len(rest))
			if err := cl.fr.WriteContinuation(stream, k == len(rest), rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
	}
	for _, tt := range []struct {
		name   string
		fields []string
		want   answer
	}{
		{"in HEADERS", []string{"transfer-encoding", "chunked", "x-1", strings.Repeat("a", 40), "x-2", strings.Repeat("b", 40)}, resetProtocol},
		{"in CONTINUATION", []string{"x-1", strings.Repeat("a", 40), "x-2", strings.Repeat("b", 40), "keep-alive", "1"}, resetProtocol},
		{"te in CONTINUATION", []string{"x-1", strings.Repeat("a", 40), "x-2", strings.Repeat("b", 40), "te", "deflate"}, resetProtocol},
		{"valid", []string{"x-1", strings.Repeat("a", 40), "x-2", strings.Repeat("b", 40), "te", "trailers"}, answer{status: "200", te: "trailers"}},
	} {
		t.Run("continuation "+tt.name, func(t *testing.T) {
			cl := dialH2(t, addr)
			b := cl.block(tt.fields...)
			// Every split, fragments of up to 7 bytes: fields across frames.
			stream := uint32(1)
			for n := 1; n < len(b); n += 5 {
				split(cl, stream, b, n, 7, n%2 == 0)
				cl.expect(stream, tt.want)
				stream += 4
				b = cl.block(tt.fields...) // indexed now
			}
		})
	}

	// A HEADERS frame whose fragment fills it: the priority field makes
	// it one frame too many, a CONTINUATION.
	for _, last := range []bool{true, false} {
		t.Run(fmt.Sprintf("full frame, END_HEADERS %v", last), func(t *testing.T) {
			cl := dialH2(t, addr)
			b := cl.block("connection", "close")
			b = append(b, literal("x-big", strings.Repeat("~", fill(len(b), maxFrame)))...)
			if len(b) != maxFrame {
				t.Fatalf("block of %d bytes", len(b))
			}
			if last {
				split(cl, 1, b, maxFrame, 0, false)
			} else {
				tail := literal("x-more", "1")
				split(cl, 1, append(b, tail...), maxFrame, len(tail), false)
			}
			cl.expect(1, resetProtocol)
		})
	}
	t.Run("full frame with marker", func(t *testing.T) {
		cl := dialH2(t, addr)
		b := cl.block()
		b = append(b, literal("x-big", strings.Repeat("~", fill(len(b), maxFrame)))...)
		tail := literal("upgrade", "h2c")
		split(cl, 1, append(b, tail...), maxFrame, maxFrame, false)
		cl.expect(1, resetProtocol)
	})
}

// literal is a literal header field without indexing, new name, neither
// string Huffman-coded (RFC 7541 §6.2.2).
func literal(name, value string) []byte {
	b := []byte{0}
	b = appendHpackInt(b, 7, 0, uint64(len(name)))
	b = append(b, name...)
	b = appendHpackInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

func appendHpackInt(b []byte, n byte, first byte, i uint64) []byte {
	k := uint64(1)<<n - 1
	if i < k {
		return append(b, first|byte(i))
	}
	b = append(b, first|byte(k))
	for i -= k; i >= 128; i >>= 7 {
		b = append(b, byte(0x80|i&0x7f))
	}
	return append(b, byte(i))
}

// fill is the length of x-big's value that brings a block of n bytes to
// size.
func fill(n, size int) int {
	for v := size - n; v > 0; v-- {
		if n+len(literal("x-big", strings.Repeat("~", v))) == size {
			return v
		}
	}
	return 0
}

// TestMalformedHeadersBody: DATA the client sent after a malformed
// request's HEADERS is dropped as on any reset stream, and the
// connection goes on; after one whose field came in a CONTINUATION,
// net/http ends the connection (the stream was never opened).
func TestMalformedHeadersBody(t *testing.T) {
	addr := h2Server(t, 0)
	post := func(cl *h2Client, stream uint32, headersLen int, fields ...string) {
		t.Helper()
		b := cl.blockOf("POST", fields...)
		n := min(headersLen, len(b))
		cl.headers(http2.HeadersFrameParam{StreamID: stream, BlockFragment: b[:n], EndHeaders: n == len(b)})
		if n < len(b) {
			cl.fr.WriteContinuation(stream, true, b[n:])
		}
		cl.fr.WriteData(stream, false, []byte("5\r\nhello\r\n"))
		cl.fr.WriteData(stream, true, []byte("0\r\n\r\n"))
	}
	cl := dialH2(t, addr)
	post(cl, 1, 1<<20, "transfer-encoding", "chunked")
	cl.expect(1, resetProtocol)
	post(cl, 5, 1<<20, "x-echo", "body")
	if got := cl.wait(5); got != (answer{status: "200", echo: "body"}) {
		t.Fatalf("POST after the reset one: %v", got)
	}

	cl = dialH2(t, addr)
	post(cl, 1, 4, "x-echo", "body", "transfer-encoding", "chunked")
	// RST_STREAM, unless the GOAWAY that net/http sends on the DATA
	// overtakes it (it writes GOAWAY first).
	got := cl.wait(1)
	if got == resetProtocol {
		got = cl.wait(3)
	}
	if got != (answer{goAway: true, rst: http2.ErrCodeProtocol}) {
		t.Fatalf("DATA after a field in CONTINUATION: %v, want GOAWAY PROTOCOL_ERROR (DATA on an idle stream)", got)
	}
}

// TestMalformedTrailers: a trailer block with a connection-specific field
// is net/http's to refuse (a declared trailer: RST_STREAM) or drop (an
// undeclared one), as before: the HEADERS rewrite does not touch what it
// does with trailers.
func TestMalformedTrailers(t *testing.T) {
	addr := h2Server(t, 0)
	for _, tt := range []struct {
		name     string
		declared bool
		want     answer
	}{
		{"declared", true, resetProtocol},
		{"undeclared", false, ok200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := dialH2(t, addr)
			var fields []string
			if tt.declared {
				fields = []string{"trailer", "connection"}
			}
			cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.blockOf("POST", fields...), EndHeaders: true})
			cl.fr.WriteData(1, false, []byte("body"))
			cl.buf.Reset()
			cl.enc.WriteField(hpack.HeaderField{Name: "connection", Value: "close"})
			cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: bytes.Clone(cl.buf.Bytes()), EndHeaders: true, EndStream: true})
			cl.expect(1, tt.want)
		})
	}
}

// TestMalformedHeadersLimits: what net/http answers otherwise it still
// answers: a header list past the limit 431, even with a connection
// field in it; an invalid field name or value a reset.
func TestMalformedHeadersLimits(t *testing.T) {
	addr := h2Server(t, 200) // a list of 520 bytes
	big := strings.Repeat("v", 500)
	for _, tt := range []struct {
		name   string
		fields []string
		want   answer
	}{
		{"too long, then connection", []string{"x-big", big, "connection", "close"}, answer{status: "431"}},
		{"connection, then too long", []string{"connection", "close", "x-big", big}, answer{status: "431"}},
		{"invalid name", []string{"x-Bad", "1", "connection", "close"}, resetProtocol},
		{"invalid value", []string{"x-bad", "a\x00b", "upgrade", "x"}, resetProtocol},
		{"under the limit", []string{"x-echo", strings.Repeat("e", 200)}, answer{status: "200", echo: strings.Repeat("e", 200)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cl := dialH2(t, addr)
			cl.get(1, tt.fields...)
			cl.expect(1, tt.want)
		})
	}
}

// TestHeaderListPastLimitInContinuation: a header list past the limit
// gets net/http's 431 (TestMalformedHeadersLimits), but one that goes on
// in a CONTINUATION frame once it is past the limit ends the connection:
// net/http stops reading such a block there (its guard against
// CONTINUATION floods), as the README says.
func TestHeaderListPastLimitInContinuation(t *testing.T) {
	addr := h2Server(t, 200) // a list of 520 bytes
	v := strings.Repeat("v", 200)
	cl := dialH2(t, addr)
	cl.headers(http2.HeadersFrameParam{StreamID: 1, BlockFragment: cl.block("x-a", v, "x-b", v, "x-c", v), EndStream: true})
	cl.buf.Reset()
	cl.enc.WriteField(hpack.HeaderField{Name: "x-d", Value: "d"})
	if err := cl.fr.WriteContinuation(1, true, bytes.Clone(cl.buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got, want := cl.wait(1), (answer{goAway: true, rst: http2.ErrCodeProtocol}); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestHeaderCheckPassesValid: header blocks net/http accepts pass byte for
// byte, however framed, and the reader keeps following the connection
// after them.
func TestHeaderCheckPassesValid(t *testing.T) {
	var in bytes.Buffer
	in.WriteString(h2Preface)
	fr := http2.NewFramer(&in, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100})
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	block := func(fields ...string) []byte {
		hb.Reset()
		for i := 0; i < len(fields); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: i == 6})
		}
		return bytes.Clone(hb.Bytes())
	}
	req := []string{":method", "GET", ":scheme", "https", ":path", "/a", ":authority", "x", "te", "trailers", "cookie", "a=b", "x-connection", "1"}
	prio := http2.PriorityParam{StreamDep: 1, Weight: 9}
	stream := uint32(1)
	for _, p := range []http2.HeadersFrameParam{
		{EndHeaders: true},
		{EndHeaders: true, EndStream: true, PadLength: 4},
		{EndHeaders: true, Priority: prio},
		{EndHeaders: true, Priority: prio, PadLength: 200},
		{EndHeaders: false},
	} {
		p.StreamID, p.BlockFragment = stream, block(req...)
		if !p.EndHeaders {
			b := p.BlockFragment
			p.BlockFragment = b[:3]
			fr.WriteHeaders(p)
			fr.WriteContinuation(stream, false, b[3:5])
			fr.WriteContinuation(stream, false, nil)
			fr.WriteContinuation(stream, true, b[5:])
		} else {
			fr.WriteHeaders(p)
		}
		fr.WriteData(stream, true, []byte("body"))
		// Trailers.
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block("x-t", "1"), EndHeaders: true, EndStream: true})
		stream += 2
	}
	enc.SetMaxDynamicTableSize(100)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block(req...), EndHeaders: true, EndStream: true})
	want := in.Bytes()
	for _, r := range []io.Reader{bytes.NewReader(want), iotest.OneByteReader(bytes.NewReader(want))} {
		fr := newFrameReader(r, 0)
		got, err := io.ReadAll(fr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %x %v, want %x", got, err, want)
		}
		if fr.hdr == nil {
			t.Fatal("the reader stopped following header blocks")
		}
	}
}

// TestHeaderCheckRewrite: the frames net/http gets in place of a
// malformed request's, byte for byte.
func TestHeaderCheckRewrite(t *testing.T) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []string{":method", ":path", "connection"} {
		enc.WriteField(hpack.HeaderField{Name: f, Value: "x"})
	}
	bad := bytes.Clone(hb.Bytes())
	prio := func(stream uint32, weight byte) []byte {
		return []byte{byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream), weight}
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	big := append(bytes.Clone(bad), literal("x-big", strings.Repeat("~", fill(len(bad), maxFrame)))...)
	for _, tt := range []struct {
		name    string
		in, out []byte
	}{
		{
			"priority added",
			frame(frameHeaders, 0x5, 3, bad),
			frame(frameHeaders, 0x25, 3, cat(prio(3, 15), bad)),
		},
		{
			"padding dropped, weight kept",
			frame(frameHeaders, 0x2c, 5, cat([]byte{2}, []byte{0x80, 0, 0, 1, 77}, bad, []byte{0, 0})),
			frame(frameHeaders, 0x24, 5, cat(prio(5, 77), bad)),
		},
		{
			"split, HEADERS ends the block",
			frame(frameHeaders, 0x5, 7, big),
			cat(frame(frameHeaders, 0x21, 7, cat(prio(7, 15), big[:maxFrame-5])), frame(frameContinuation, 0x4, 7, big[maxFrame-5:])),
		},
		{
			"split, CONTINUATION follows",
			cat(frame(frameHeaders, 0x1, 7, big), frame(frameContinuation, 0x4, 7, literal("a", "b"))),
			cat(frame(frameHeaders, 0x21, 7, cat(prio(7, 15), big[:maxFrame-5])), frame(frameContinuation, 0, 7, big[maxFrame-5:]), frame(frameContinuation, 0x4, 7, literal("a", "b"))),
		},
		{
			"field in CONTINUATION",
			cat(frame(frameHeaders, 0x1, 9, bad[:2]), frame(frameContinuation, 0, 9, bad[2:4]), frame(frameContinuation, 0x4, 9, bad[4:])),
			cat(frame(frameHeaders, 0x1, 9, bad[:2]), frame(frameContinuation, 0, 9, bad[2:4]), frame(frameContinuation, 0, 9, bad[4:]), frame(frameContinuation, 0x4, 9, badFieldMarker)),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := frame(0x0, 0x1, 1, []byte("after"))
			in := cat([]byte(h2Preface), tt.in, data)
			want := cat([]byte(h2Preface), tt.out, data)
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
				got, err := io.ReadAll(newFrameReader(r, 0))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("got %x %v,\nwant %x", got, err, want)
				}
			}
		})
	}
}

// fuzzNames and fuzzValues are the names and values FuzzHeaderCheck
// builds requests of.
var (
	fuzzNames  = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "x-a", "accept", "cookie", "x-a-rather-long-field-name"}
	fuzzValues = []string{"trailers", "gzip", "", "close", "trailers, deflate", "a value long enough that the encoder may Huffman-code it, or not"}
)

// FuzzHeaderCheck sends requests made of fuzzNames and fuzzValues,
// framed every way (padding, priority, CONTINUATION frames of any size,
// table size updates, fields indexed or not), through a frameReader to
// a framer that reads them as net/http's server does
// (golang.org/x/net/http2 is its code). A request net/http would answer
// 400 must come out as a stream error of type PROTOCOL_ERROR, or HEADERS
// that depend on themselves, carrying the same fields; every other one as
// the same fields and, when no request was malformed, the same bytes.
// Decoding every request right after a malformed one shows the dynamic
// tables kept in step.
func FuzzHeaderCheck(f *testing.F) {
	f.Add([]byte{0x10, 0x00, 0x01, 0x20, 0x31, 0x52, 0x06, 0x07})
	f.Add([]byte{0x33, 0x50, 0x02, 0x99, 0x71, 0x61, 0x50, 0x02, 0x40, 0x51, 0x22, 0x06, 0x18})
	f.Add([]byte{0x25, 0x00, 0x01, 0x30, 0x31, 0x03, 0xff, 0xff, 0x40, 0x85, 0x71, 0x00, 0x07, 0x00, 0x55, 0xfe, 0x31})
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		var in bytes.Buffer
		in.WriteString(h2Preface)
		w := http2.NewFramer(&in, nil)
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		type request struct {
			stream uint32
			fields []hpack.HeaderField
			bad    bool
		}
		var reqs []request
		for stream := uint32(1); len(data) > 0 && stream < 200; stream += 2 {
			op := next()
			if op&0x80 != 0 {
				enc.SetMaxDynamicTableSize(uint32(next()) * 32)
			}
			hb.Reset()
			fields := []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/"}}
			for _, hf := range fields {
				enc.WriteField(hf)
			}
			conn, te := false, 0
			badTE := false
			for n := int(op & 7); n > 0; n-- {
				b := next()
				hf := hpack.HeaderField{Name: fuzzNames[int(b&0xf)%len(fuzzNames)], Value: fuzzValues[int(b>>4)%len(fuzzValues)], Sensitive: b&0x80 != 0 && b&0x40 != 0}
				enc.WriteField(hf)
				hf.Sensitive = false
				fields = append(fields, hf)
				switch hf.Name {
				case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
					conn = true
				case "te":
					te++
					badTE = badTE || te > 1 || hf.Value != "trailers" && hf.Value != ""
				}
			}
			reqs = append(reqs, request{stream, fields, conn || badTE})
			block := hb.Bytes()
			p := http2.HeadersFrameParam{StreamID: stream, EndStream: op&0x40 != 0}
			if op&0x08 != 0 {
				p.PadLength = next()
			}
			if op&0x10 != 0 {
				p.Priority = http2.PriorityParam{StreamDep: uint32(next()) &^ 1, Weight: next(), Exclusive: op&0x20 != 0}
			}
			first := len(block)
			if op&0x20 != 0 {
				first = min(int(next()), len(block))
			}
			p.BlockFragment, p.EndHeaders = block[:first], first == len(block)
			w.WriteHeaders(p)
			for rest := block[first:]; len(rest) > 0; {
				k := min(int(next()), len(rest))
				if len(data) == 0 {
					k = len(rest) // no empty frames without end
				}
				w.WriteContinuation(stream, k == len(rest), rest[:k])
				rest = rest[k:]
			}
		}
		out, err := io.ReadAll(newFrameReader(bytes.NewReader(in.Bytes()), 0))
		if err != nil {
			t.Fatal(err)
		}
		anyBad := false
		r := http2.NewFramer(nil, bytes.NewReader(out[len(h2Preface):]))
		r.ReadMetaHeaders = hpack.NewDecoder(hpackTableSize, nil)
		r.MaxHeaderListSize = uint32(http.DefaultMaxHeaderBytes + 10*32)
		r.SetMaxReadFrameSize(maxFrame)
		for _, req := range reqs {
			anyBad = anyBad || req.bad
			fr, err := r.ReadFrame()
			var se http2.StreamError
			if errors.As(err, &se) {
				if !req.bad || se.StreamID != req.stream || se.Code != http2.ErrCodeProtocol {
					t.Fatalf("stream %d (malformed %v): %v", req.stream, req.bad, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("stream %d: %v", req.stream, err)
			}
			mh, ok := fr.(*http2.MetaHeadersFrame)
			if !ok || mh.StreamID != req.stream {
				t.Fatalf("stream %d: got %v", req.stream, fr)
			}
			selfDep := mh.HasPriority() && mh.Priority.StreamDep == mh.StreamID
			if selfDep != req.bad {
				t.Fatalf("stream %d (malformed %v): priority %+v", req.stream, req.bad, mh.Priority)
			}
			if len(mh.Fields) != len(req.fields) {
				t.Fatalf("stream %d: fields %v, want %v", req.stream, mh.Fields, req.fields)
			}
			for i, hf := range mh.Fields {
				if hf.Name != req.fields[i].Name || hf.Value != req.fields[i].Value {
					t.Fatalf("stream %d: fields %v, want %v", req.stream, mh.Fields, req.fields)
				}
			}
		}
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Fatalf("after the last request: %v", err)
		}
		if !anyBad && !bytes.Equal(in.Bytes(), out) {
			t.Fatalf("valid requests changed:\n%x\n%x", in.Bytes(), out)
		}
	})
}
