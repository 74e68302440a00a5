package h2proxy

import (
	"bytes"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
)

// TestSmallResponseEndsWithItsData: a response whose body came whole from
// the endpoint reaches the client as its HEADERS frame and one DATA frame
// that carries the body and ends the stream, not a DATA frame and then an
// empty one to end it: the node leaves the body's last piece to net/http,
// which sends it with the stream's end, in one write with the head. The
// client gets the endpoint's length, and none of net/http's making where
// the endpoint sent the body chunked (Go's server writes a chunked body
// that fits its buffer with the chunk that ends it: one write).
func TestSmallResponseEndsWithItsData(t *testing.T) {
	for _, tc := range []struct {
		name, field, value string
		length             string   // the client's content-length
		frames             []string // nil: not checked
	}{
		{"with a length", "Content-Length", "6", "6", []string{"HEADERS", "DATA+END"}},
		{"chunked", "Transfer-Encoding", "chunked", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(tc.field, tc.value)
				w.Write([]byte("hello\n"))
			}, false)
			cl := dialH2(t, serveOne(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}}, false)))
			for stream := uint32(1); stream <= 5; stream += 2 {
				cl.get(stream)
				got := cl.response(stream)
				if string(got.body) != "hello\n" {
					t.Errorf("stream %d: body %q, want %q", stream, got.body, "hello\n")
				}
				if tc.frames != nil && !slices.Equal(got.frames, tc.frames) {
					t.Errorf("stream %d: frames %v, want %v", stream, got.frames, tc.frames)
				}
				if got.length != tc.length {
					t.Errorf("stream %d: content-length %q, want %q", stream, got.length, tc.length)
				}
			}
		})
	}
}

// response is what came back on a stream.
type response struct {
	frames []string // "HEADERS", "DATA", "DATA+END", in order
	length string   // the head's content-length ("": none)
	body   []byte
}

// response reads frames until stream ends, acknowledging the server's
// SETTINGS. The stream must be the only one open: another's frames are
// passed over.
func (cl *h2Client) response(stream uint32) response {
	cl.t.Helper()
	var r response
	for ended := false; !ended; {
		f, err := cl.fr.ReadFrame()
		if err != nil {
			cl.t.Fatalf("stream %d: reading: %v (frames so far: %v)", stream, err, r.frames)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				cl.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			r.frames = append(r.frames, "HEADERS")
			r.length = value(f, "content-length")
			ended = f.StreamEnded()
		case *http2.DataFrame:
			r.body = append(r.body, f.Data()...)
			if ended = f.StreamEnded(); ended {
				r.frames = append(r.frames, "DATA+END")
			} else {
				r.frames = append(r.frames, "DATA")
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			cl.t.Fatalf("stream %d: %v", stream, f)
		}
	}
	return r
}

// readCounter counts the reads of a connection that returned bytes.
type readCounter struct {
	net.Conn
	reads atomic.Int64
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// TestClientFramesReadTogether: requests a client sends together, in one
// write, are taken from the socket together. net/http reads a frame's
// header and its payload apart, and on a plain connection each of those
// was a read of the socket of its own: two a request, 24 reads for these
// ten.
func TestClientFramesReadTogether(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }, false)
	rc := &readCounter{}
	addr := serveOneVia(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}}, false), func(c net.Conn) net.Conn {
		rc.Conn = c
		return rc
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The preface, SETTINGS and ten requests, in one write.
	var out bytes.Buffer
	out.WriteString(h2Preface)
	cl := &h2Client{t: t, c: c, fr: http2.NewFramer(&out, c)}
	cl.enc = hpack.NewEncoder(&cl.buf)
	cl.fr.WriteSettings()
	const n = 10
	for i := range n {
		cl.get(uint32(2*i + 1))
	}
	if _, err := c.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	cl.fr = http2.NewFramer(c, c)
	cl.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for answered := map[uint32]bool{}; len(answered) < n; {
		f, err := cl.fr.ReadFrame()
		if err != nil {
			t.Fatalf("%d of %d answered: reading: %v", len(answered), n, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				cl.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if status := f.PseudoValue("status"); status != "200" {
				t.Fatalf("stream %d: status %s, want 200", f.StreamID, status)
			}
			answered[f.StreamID] = true
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			t.Fatalf("%v", f)
		}
	}
	// The batch, and the acknowledgement of the server's SETTINGS; a read
	// may take the batch in two parts.
	if got := rc.reads.Load(); got > 3 {
		t.Errorf("%d reads of the socket for %d requests sent together, want 3 at most", got, n)
	}
}
