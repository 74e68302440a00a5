package h2proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/loopback"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestEarlyAnswerToAnUpload: on a listener whose HTTP/1.1 connections
// this engine serves (Translate), an endpoint's answer that comes before
// it took the whole request body (an early 413 or 401) reaches the client
// at once, with Connection: close, and the connection closes, as on the
// HTTP/1.1 engine: the client need not send the rest. net/http alone
// reads the rest before a byte of the answer goes, as long as the client
// holds it back, and so does an HTTP/2 transport before the answer's body
// closes. An upload the endpoint took whole keeps the connection.
func TestEarlyAnswerToAnUpload(t *testing.T) {
	h2refuser := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "big", http.StatusRequestEntityTooLarge)
	}, true)
	for _, e := range []struct {
		name string
		ep   *upstream.Endpoint
		h2   bool
	}{{"HTTP/1.1 to the endpoint", refuser(t), false}, {"HTTP/2 to the endpoint", h2refuser, true}} {
		s := engine(t, &httpproxy.Config{Director: pickDirector{e.ep}, IdleTimeout: time.Minute}, e.h2)
		client, ended := serveTCP(t, s)
		// 1000 bytes of 50000, and the client waits for an answer.
		io.WriteString(client, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 50000\r\n\r\n"+strings.Repeat("x", 1000))
		br := bufio.NewReader(client)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", e.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 413 || string(body) != "big\n" || !resp.Close {
			t.Errorf("%s: got %s %q (close %v), want the endpoint's 413 with Connection: close", e.name, resp.Status, body, resp.Close)
		}
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s: after the answer: %d bytes, %v; want the connection closed", e.name, n, err)
		}
		if why := <-ended; why != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
			t.Errorf("%s: the connection ended as %v, want CLIENT_CLOSED", e.name, why)
		}
	}

	// The same upload, whole, to an endpoint that reads it: the
	// connection stays for the next request.
	up := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("y", int(n/1000)))
	}, false)
	client, _ := serveTCP(t, engine(t, &httpproxy.Config{Director: pickDirector{up}, IdleTimeout: time.Minute}, false))
	go io.WriteString(client, "PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 50000\r\n\r\n"+strings.Repeat("x", 50000)+"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(client)
	for i, want := range []int{50, 0} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || len(body) != want || resp.Close {
			t.Errorf("response %d: %s, %d bytes (close %v); want 200, %d bytes, the connection kept", i+1, resp.Status, len(body), resp.Close, want)
		}
	}
}

// TestEarlyAnswerToALargeUpload: Go's http.Client, which writes a whole
// upload before it reads, gets an endpoint's early 413 to each of its 8
// MiB uploads through a listener whose HTTP/1.1 connections this engine
// serves (Translate), not a broken pipe: once the answer went, the node
// reads on what the client still sends before it closes (a lingering
// close), as the HTTP/1.1 engine does. Without, about two uploads in
// five failed.
func TestEarlyAnswerToALargeUpload(t *testing.T) {
	s := engine(t, &httpproxy.Config{Director: pickDirector{refuser(t)}, IdleTimeout: time.Minute}, false)
	addr := loopback.Serve(t, serving(s, nil))
	client := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	body := make([]byte, 8<<20)
	for i := range 10 {
		resp, err := client.Post("http://"+addr+"/up", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("upload %d: %v, want the endpoint's 413", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || string(got) != "big\n" {
			t.Fatalf("upload %d: %s %q, want the endpoint's 413", i, resp.Status, got)
		}
	}
}

// refuser is an endpoint that answers every request 413 once it read its
// head, without reading its body, and closes the connection.
func refuser(t *testing.T) *upstream.Endpoint {
	return upstream.New("web", "a", loopback.Serve(t, func(c net.Conn) {
		defer c.Close()
		http.ReadRequest(bufio.NewReader(c)) // the head alone
		io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig\n")
		time.Sleep(200 * time.Millisecond)
	}))
}
