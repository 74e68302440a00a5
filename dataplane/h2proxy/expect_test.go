package h2proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
)

// TestExpectContinueReachesTheEndpoint: a request with Expect:
// 100-continue from the client of a listener whose HTTP/1.x connections
// this engine serves (Translate) goes to the endpoint with its
// expectation, as through the HTTP/1.1 engine, so the endpoint decides:
// its 100 asks the client for the body, and its refusal (a 417, a 401)
// reaches the client before the body is sent, and ends the connection.
// The endpoint may speak HTTP/1.1 or HTTP/2. net/http alone answered 100
// Continue itself, so the client sent its body whatever the endpoint
// would have said.
func TestExpectContinueReachesTheEndpoint(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		// Go's HTTP/2 server keeps the expectation to itself.
		if r.ProtoMajor == 1 && r.Header.Get("Expect") != "100-continue" {
			http.Error(w, "no expectation", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/refuse" {
			http.Error(w, "refused", http.StatusExpectationFailed)
			return
		}
		body, _ := io.ReadAll(r.Body) // net/http sends the 100
		io.WriteString(w, "got "+string(body))
	}, true)
	cfg := &httpproxy.Config{Director: pickDirector{ep}}
	for _, e := range []struct {
		name  string
		serve func(net.Conn)
	}{
		{"the HTTP/1.1 engine", http1Engine(cfg)},
		{"this engine", this(t, cfg, nil)},
		{"this engine, HTTP/2 to the endpoint", serving(engine(t, cfg, true), nil)},
	} {
		t.Run(e.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			go func() {
				defer server.Close()
				e.serve(server)
			}()
			client.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(client)
			const head = " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"

			// The endpoint asks for the body: its 100 comes first.
			go io.WriteString(client, "PUT /up"+head)
			if line, _ := statusLine(t, br); line != "HTTP/1.1 100 Continue" {
				t.Fatalf("first answered %q, want the endpoint's 100 Continue", line)
			}
			go io.WriteString(client, "hello")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "got hello" {
				t.Fatalf("after the body: %s %q, want 200 \"got hello\"", resp.Status, body)
			}

			// The endpoint refuses: its answer comes first, without a body
			// sent, and ends the connection.
			go io.WriteString(client, "PUT /refuse"+head)
			line, h := statusLine(t, br)
			if line != "HTTP/1.1 417 Expectation Failed" || h.Get("Connection") != "close" {
				t.Fatalf("first answered %q (Connection %q), want the endpoint's 417, and close", line, h.Get("Connection"))
			}
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "refused\n" {
				t.Errorf("after the 417: %q, %v; want its body, then the connection closed", rest, err)
			}
		})
	}
}

// statusLine reads a response's status line and its fields.
func statusLine(t *testing.T, br *bufio.Reader) (string, textproto.MIMEHeader) {
	t.Helper()
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return line, h
}

// TestExpectContinueWithoutContinue: an endpoint that reads the body of
// an Expect: 100-continue request without sending 100 Continue (Python's
// http.server, an HTTP/1.0 one) still gets it, from a client that sends
// it without waiting for the 100 (curl waits a second): the transport
// sends the body after waiting expectContinueTimeout for the endpoint's
// 100.
func TestExpectContinueWithoutContinue(t *testing.T) {
	ep := upstream.New("web", "a", loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\ngot "+string(body))
	}))
	client, _ := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}}, false))
	go io.WriteString(client, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
	start := time.Now()
	br := bufio.NewReader(client)
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode == 100 { // the transport read the body at last
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "got hello" {
		t.Errorf("%s %q; want the endpoint's 200 \"got hello\"", resp.Status, body)
	}
	t.Logf("answered after %v", time.Since(start))
}
