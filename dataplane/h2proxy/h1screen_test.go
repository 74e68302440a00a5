package h2proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestHTTP1FramedAsTheHTTP1Engine: on a listener whose HTTP/1.1
// connections this engine serves (Translate), a client's requests are
// framed as the HTTP/1.1 engine frames them before net/http reads them. A
// request with both Content-Length and chunked Transfer-Encoding, which
// net/http alone reads by the chunked framing on a connection it keeps (so
// a proxy in front that framed it by its length would read another
// request behind it), gets 400 after the requests before it, the
// connection closes, and nothing of it reaches the endpoint. Bodies of
// either framing, pipelined, and empty lines before a request line go
// through as on the HTTP/1.1 engine.
func TestHTTP1FramedAsTheHTTP1Engine(t *testing.T) {
	var mu sync.Mutex
	var seen []string // what the endpoint got: method, path and body
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI+" "+string(b))
		mu.Unlock()
	}, false)
	client, ended := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}}, false))
	go io.WriteString(client, "POST /length HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"+
		"\r\n"+ // an empty line before a request line
		"POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nworld\r\n0\r\n\r\n"+
		"POST /smuggler HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(client)
	for i, want := range []int{200, 200, 400} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want || want == 400 && !resp.Close {
			t.Fatalf("response %d: %s %q (close %v), want %d", i+1, resp.Status, body, resp.Close, want)
		}
	}
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after the 400: read %d bytes, %v; want the connection closed", n, err)
	}
	select {
	case why := <-ended:
		if why != sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST {
			t.Errorf("the connection ended as %v, want BAD_REQUEST", why)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"POST /length hello", "POST /chunked world"}; !slices.Equal(seen, want) {
		t.Errorf("the endpoint got %q, want %q", seen, want)
	}
}

// TestH1ScreenBadChunk: a chunked body whose framing the HTTP/1.1 engine
// refuses is cut where it turns bad: the bytes before go on, then reads
// fail.
func TestH1ScreenBadChunk(t *testing.T) {
	c := &countConn{Conn: discardConn{}, screen: &h1Screen{maxHead: 1 << 10}}
	c.pre = []byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3 \r\nxyz\r\n0\r\n\r\n")
	got, err := io.ReadAll(io.LimitReader(c, 1<<10))
	if want := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"; string(got) != want || err != errBadFraming {
		t.Errorf("read %q, %v; want %q, then %v", got, err, want, errBadFraming)
	}
}

// TestH1ScreenEmptyLines: empty lines before a request line are dropped,
// up to the 8 bytes the HTTP/1.1 engine ignores; more are refused, as
// there.
func TestH1ScreenEmptyLines(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range []struct{ in, want string }{
		{"\r\n\r\n\r\n\r\n" + get, get},
		{"\r\n\r\n\r\n\r\n\n" + get, refusedLine},
		{get + "\r\n\r\n\r\n\r\n" + get, get + get}, // counted per head
	} {
		if got, err := screened([]byte(tc.in), 3); string(got) != tc.want || err != io.EOF {
			t.Errorf("%q handed on as %q, %v; want %q, EOF", tc.in, got, err, tc.want)
		}
	}
}

// readerConn is a connection whose reads come from r, a few bytes at a
// time.
type readerConn struct {
	net.Conn
	r    io.Reader
	step int
}

func (c *readerConn) Read(p []byte) (int, error) {
	if len(p) > c.step {
		p = p[:c.step]
	}
	return c.r.Read(p)
}

// screenLimits are the head limits of screened's listener, small enough
// for the fuzzer to cross.
var screenLimits = httpproxy.NewServer(&httpproxy.Config{MaxHeaderBytes: 512, MaxHeaderCount: 8, MaxURILength: 64}, nil).Config

// screened is what a screen hands on of data, read by net/http's buffer
// size, when the client's bytes come step at a time, and the error that
// ended it.
func screened(data []byte, step int) ([]byte, error) {
	c := &countConn{Conn: &readerConn{r: bytes.NewReader(data), step: step}, screen: &h1Screen{maxHead: 8 << 10, config: screenLimits}}
	var out []byte
	buf := make([]byte, 4<<10)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// FuzzH1Screen: the screen never panics; what it hands on does not depend
// on how the client's bytes were split; it hands on nothing the client did
// not send but the refusal's line, and drops nothing but empty lines
// before a request line, or what comes after a refusal or a cut.
func FuzzH1Screen(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		whole, werr := screened(data, len(data)+1)
		split, serr := screened(data, int(step)%64+1)
		if !bytes.Equal(whole, split) || werr != serr {
			t.Fatalf("read whole: %q, %v; %d at a time: %q, %v", whole, werr, int(step)%64+1, split, serr)
		}
		out := whole
		if refused := bytes.HasSuffix(out, []byte(refusedLine)); refused {
			out = out[:len(out)-len(refusedLine)]
		}
		// out is data with empty lines dropped here and there, cut short.
		i := 0
		for _, b := range out {
			for i < len(data) && data[i] != b && (data[i] == '\r' || data[i] == '\n') {
				i++
			}
			if i == len(data) || data[i] != b {
				t.Fatalf("handed on %q, which is not the client's %q less empty lines", whole, data)
			}
			i++
		}
	})
}

// BenchmarkH1Screen: the screen's cost per request on a connection of
// small pipelined GETs, what it adds to the HTTP/2 engine's HTTP/1.1
// (about 40 µs a request, README "Cost").
func BenchmarkH1Screen(b *testing.B) {
	const requests = 100
	data := bytes.Repeat([]byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"), requests)
	buf := make([]byte, 4<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c := &countConn{Conn: &readerConn{r: bytes.NewReader(data), step: 4 << 10}, screen: &h1Screen{maxHead: 8 << 10}}
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*requests), "ns/request")
}
