package httpproxy

import (
	"bufio"
	"cmp"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// uuidV4 is the shape of the ids the proxy makes.
var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// idDirector sends every request to ep, after dead when set (a connect
// that fails, so that the request is picked again), and records the id
// each pick saw. A request for /edited gets edits.
type idDirector struct {
	ep, dead *upstream.Endpoint
	ids      chan string
	edits    *HeaderEdits
}

func (d *idDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	d.ids <- string(r.RequestID())
	if string(r.Path()) == "/edited" {
		r.EditRequest(d.edits)
	}
	ep := d.ep
	if d.dead != nil && !r.Failed(d.dead) {
		ep = d.dead
	}
	ep.Acquire()
	return ep, time.Second, nil
}

// idLog keeps the ids of the exchanges a meter logs, copied while valid.
type idLog struct {
	mu  sync.Mutex
	ids []string
}

func (l *idLog) Sample() bool { return true }
func (l *idLog) Log(_ string, x *meter.Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, string(x.RequestID))
}

// TestRequestIDs: with Config.RequestID, the endpoint gets one id field
// per request: a new UUID, in place of whatever a client that is not a
// trusted peer sent; a trusted peer's own id, kept. A request picked again
// after a failed connect keeps its id, and the meter logs the id the
// endpoint got. Without it, the field passes as any other.
func TestRequestIDs(t *testing.T) {
	type request struct {
		fields string
		want   string // the id the endpoint gets: "new" for a new UUID
		path   string // "/edited": a rule sets the field; "/" else
	}
	loopbackPeers := prefixes{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tt := range []struct {
		name     string
		header   string
		trusted  prefixes
		requests []request
	}{
		{"peer not trusted", "X-Request-ID", nil, []request{
			{"", "new", ""},
			{"", "new", ""}, // another on the same connection: another id
			{"X-Request-ID: spoofed\r\nx-request-id: again\r\n", "new", ""},
		}},
		{"trusted peer", "X-Request-ID", loopbackPeers, []request{
			{"x-request-id: lb-7f3a\r\n", "lb-7f3a", ""},
			{"", "new", ""},
			{"X-Request-ID: has space\r\n", "new", ""}, // not one to keep
			{"X-Request-ID: " + strings.Repeat("a", 129) + "\r\n", "new", ""},
			{"X-Request-ID: " + strings.Repeat("a", 128) + "\r\n", strings.Repeat("a", 128), ""},
			// A rule's edits come after, as on the forwarding headers.
			{"", "ruled", "/edited"},
		}},
		{"a header of its own", "X-Trace", loopbackPeers, []request{
			{"X-Trace: t-1\r\nX-Request-ID: other\r\n", "t-1", ""},
		}},
		{"no ids", "", nil, []request{
			{"X-Request-ID: as sent\r\n", "as sent", ""},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, heads := captureBackend(t, "HTTP/1.1 204 No Content\r\n\r\n")
			edits, err := NewHeaderEdits(nil, []Field{{"x-request-id", "ruled"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := &idDirector{ep: upstream.New("web", "b1", addr), ids: make(chan string, 4), edits: edits}
			var log idLog
			p := startProxy(t, &Config{Director: d, TrustedPeers: tt.trusted, RequestID: tt.header, Meter: meter.NewListener("l", &log)})
			conn := p.dial()
			br := bufio.NewReader(conn)
			seen := map[string]bool{}
			for i, rq := range tt.requests {
				io.WriteString(conn, "GET "+cmp.Or(rq.path, "/")+" HTTP/1.1\r\nHost: a\r\n"+rq.fields+"\r\n")
				head := <-heads
				readResponse(t, br, "GET")
				r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
				if err != nil {
					t.Fatalf("the endpoint got %q: %v", head, err)
				}
				name := tt.header
				if name == "" {
					name = "X-Request-ID"
				}
				got := r.Header.Values(name)
				if len(got) != 1 || rq.want == "new" && (!uuidV4.MatchString(got[0]) || seen[got[0]]) || rq.want != "new" && got[0] != rq.want {
					t.Errorf("request %d with %q: the endpoint got %s %q, want one, %s", i+1, rq.fields, name, got, rq.want)
					continue
				}
				seen[got[0]] = true
				if picked := <-d.ids; rq.path == "" && (tt.header != "" && picked != got[0] || tt.header == "" && picked != "") {
					t.Errorf("request %d: the Director saw id %q, the endpoint %q", i+1, picked, got[0])
				}
				if tt.header == "X-Trace" && r.Header.Get("X-Request-ID") != "other" {
					t.Errorf("X-Request-ID, not the id's header: the endpoint got %q, want it as sent", r.Header.Get("X-Request-ID"))
				}
			}
			conn.Close()
			waitFor(t, func() bool { log.mu.Lock(); defer log.mu.Unlock(); return len(log.ids) == len(tt.requests) })
			for i, id := range log.ids {
				if want := tt.header != ""; want != (id != "") || want && !seen[id] && tt.requests[i].path == "" {
					t.Errorf("request %d: logged id %q; the endpoints got %v", i+1, id, seen)
				}
			}
		})
	}

	t.Run("picked again", func(t *testing.T) {
		addr, heads := captureBackend(t, "HTTP/1.1 204 No Content\r\n\r\n")
		d := &idDirector{ep: upstream.New("web", "b1", addr), dead: upstream.New("web", "dead", loopback.FreeAddr(t)), ids: make(chan string, 4)}
		p := startProxy(t, &Config{Director: d, RequestID: "X-Request-ID", Retries: 1})
		conn := p.dial()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		head := <-heads
		readResponse(t, bufio.NewReader(conn), "GET")
		first, second := <-d.ids, <-d.ids
		if first != second || !strings.Contains(head, "\r\nX-Request-ID: "+first+"\r\n") {
			t.Errorf("picks saw ids %q and %q; the endpoint got\n%s", first, second, head)
		}
	})
}

// respIDDirector answers by path: /deny with a 403 page, /slow with a
// 429 that says when to come back, /moved with a redirect, /none with no
// endpoint; /dead goes to an endpoint that refuses connects, /edited to
// ep with response edits that set the id field, anything else to ep.
type respIDDirector struct {
	ep, dead          *upstream.Endpoint
	deny, slow, moved *Answer
	edits             *HeaderEdits
}

func (d *respIDDirector) Pick(r *Request) (*upstream.Endpoint, time.Duration, error) {
	ep := d.ep
	switch string(r.Path()) {
	case "/deny":
		r.Respond(d.deny)
		return nil, 0, nil
	case "/slow":
		r.Respond(d.slow)
		r.RetryAfter(time.Second)
		return nil, 0, nil
	case "/moved":
		r.Respond(d.moved)
		return nil, 0, nil
	case "/none":
		return nil, 0, ErrNoEndpoint
	case "/dead":
		ep = d.dead
	case "/edited":
		r.EditResponse(d.edits)
	}
	ep.Acquire()
	return ep, time.Second, nil
}

// TestRequestIDsInResponses: with Config.RequestIDInResponse, the client
// gets the id the endpoint got, in one field that replaces the endpoint's
// own, unless a rule's response edits set it; and the proxy's own answers
// to a request given an id (a rule's page, 429, redirect; 503, 502 and
// an error page of its own; a 413 before the pick) carry it too, never
// the id of the request before. Without it, the endpoint's fields pass as sent and the
// own answers carry none.
func TestRequestIDsInResponses(t *testing.T) {
	a := mustAnswer(t)
	d := &respIDDirector{
		dead:  upstream.New("web", "dead", loopback.FreeAddr(t)),
		deny:  a(NewResponse(Response{Status: 403, Body: []byte("no\n")})),
		slow:  a(NewResponse(Response{Status: 429, Body: []byte("slow\n")})),
		moved: a(NewRedirect(Redirect{Code: 301, Scheme: "https"})),
	}
	edits, err := NewHeaderEdits(nil, []Field{{"X-Request-ID", "ruled"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.edits = edits
	addr, heads := captureBackend(t, "HTTP/1.1 200 OK\r\nX-Request-ID: endpoint-own\r\nx-request-id: two\r\nContent-Length: 2\r\n\r\nok")
	d.ep = upstream.New("web", "b1", addr)
	pages := map[int]ErrorPage{503: {Body: []byte("<p>down</p>")}}
	loopbackPeers := prefixes{netip.MustParsePrefix("127.0.0.0/8")}

	type request struct {
		method, path, fields string
		status               int
		want                 string // the client's id: "endpoint" for the one the endpoint got, "new" for a new UUID, "" for none
		also                 string // another field the answer must have, "Name: value"
	}
	endpointFields := []string{"endpoint-own", "two"}
	for _, tt := range []struct {
		name       string
		inResponse bool
		trusted    prefixes
		requests   []request
	}{
		{"in responses", true, nil, []request{
			{"GET", "/", "", 200, "endpoint", ""},
			{"GET", "/", "X-Request-ID: spoofed\r\n", 200, "endpoint", ""},
			{"GET", "/edited", "", 200, "ruled", ""},
			{"GET", "/deny", "", 403, "new", ""},
			{"HEAD", "/deny", "", 403, "new", ""},
			{"GET", "/slow", "", 429, "new", "Retry-After: 1"},
			{"GET", "/moved", "", 301, "new", "Location: https://a/moved"},
			{"GET", "/none", "", 503, "new", "Content-Type: text/html; charset=utf-8"},
			{"GET", "/dead", "", 502, "new", ""},
			{"GET", "/", "", 200, "endpoint", ""},
		}},
		{"a trusted peer's", true, loopbackPeers, []request{
			{"GET", "/", "X-Request-ID: lb-1\r\n", 200, "lb-1", ""},
			{"GET", "/deny", "X-Request-ID: lb-2\r\n", 403, "lb-2", ""},
		}},
		{"not in responses", false, nil, []request{
			{"GET", "/", "", 200, "as sent", ""},
			{"GET", "/deny", "", 403, "", ""},
			{"GET", "/none", "", 503, "", ""},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, &Config{Director: d, RequestID: "X-Request-ID", RequestIDInResponse: tt.inResponse, TrustedPeers: tt.trusted, ErrorPages: pages, MaxRequestBodyBytes: 10})
			conn := p.dial()
			br := bufio.NewReader(conn)
			seen := map[string]bool{}
			for i, rq := range tt.requests {
				io.WriteString(conn, rq.method+" "+rq.path+" HTTP/1.1\r\nHost: a\r\n"+rq.fields+"\r\n")
				r := readResponse(t, br, rq.method)
				got := r.headers["x-request-id"]
				var want []string
				switch rq.want {
				case "endpoint":
					head := <-heads
					sent, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
					if err != nil {
						t.Fatalf("the endpoint got %q: %v", head, err)
					}
					want = sent.Header.Values("X-Request-ID")
				case "new":
					if len(got) == 1 && uuidV4.MatchString(got[0]) && !seen[got[0]] {
						want = got
					} else {
						want = []string{"a new UUID"}
					}
				case "as sent":
					<-heads
					want = endpointFields
				case "ruled", "lb-1", "lb-2":
					if rq.status == 200 {
						<-heads
					}
					want = []string{rq.want}
				}
				if r.code != rq.status || strings.Join(got, ",") != strings.Join(want, ",") || len(want) == 1 && seen[want[0]] {
					t.Errorf("request %d, %s %s: %d with X-Request-ID %q, want %d with %q", i+1, rq.method, rq.path, r.code, got, rq.status, want)
				}
				if len(got) == 1 {
					seen[got[0]] = true
				}
				if name, value, ok := strings.Cut(rq.also, ": "); ok && r.header(name) != value {
					t.Errorf("request %d, %s %s: %s %q, want %q", i+1, rq.method, rq.path, name, r.header(name), value)
				}
			}
			// A request refused before its pick (a body over the limit)
			// has an id of its own, not the last request's.
			io.WriteString(conn, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
			r := readResponse(t, br, "POST")
			if got := r.headers["x-request-id"]; r.code != 413 || tt.inResponse != (len(got) == 1) || len(got) > 1 || len(got) == 1 && seen[got[0]] {
				t.Errorf("a body over the limit: %s with X-Request-ID %q; want 413 with a new id: %v", r.status, got, tt.inResponse)
			}
		})
	}
}

func TestNewRequestIDsDoNotAllocate(t *testing.T) {
	var b [36]byte
	if n := testing.AllocsPerRun(100, func() { newRequestID(&b) }); n != 0 {
		t.Errorf("%v allocations per id", n)
	}
	if !uuidV4.Match(b[:]) {
		t.Errorf("id %q is not a UUID version 4", b)
	}
}

// BenchmarkRequestID is the cost of giving a request a new id and writing
// its field, as the forwarded head gets it.
func BenchmarkRequestID(b *testing.B) {
	r := parseTestRequest(b, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	cfg := &Config{RequestID: "X-Request-ID"}
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		r.id = nil
		r.setRequestID(cfg)
		out = r.appendIDField(out[:0])
	}
	if !strings.HasPrefix(string(out), "X-Request-ID: ") || !uuidV4.Match(r.id) {
		b.Fatalf("field %q", out)
	}
}
