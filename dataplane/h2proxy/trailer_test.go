package h2proxy

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
)

// TestHTTP1RequestTrailers: on a listener whose HTTP/1.1 connections this
// engine serves (Translate), the trailers of a chunked request body reach
// the endpoint, announced or not, as on the HTTP/1.1 engine, but for the
// fields no trailer may carry; and such a body past
// max_request_body_bytes still gets 413.
func TestHTTP1RequestTrailers(t *testing.T) {
	got := make(chan http.Header, 2)
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		got <- r.Trailer
	}, false)
	client, _ := serveHTTP1(t, engine(t, &httpproxy.Config{Director: pickDirector{ep}, MaxRequestBodyBytes: 1000}, false))
	big := strings.Repeat("b", 600)
	go io.WriteString(client, "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"+
		"X-Checksum: 900150983cd24fb0\r\nConnection: x\r\nContent-Length: 5\r\nHost: evil\r\n\r\n"+
		"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n"+big+"\r\n258\r\n"+big+"\r\n0\r\n\r\n")
	br := bufio.NewReader(client)
	for i, want := range []int{200, 413} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("response %d: %s, want %d", i+1, resp.Status, want)
		}
		if i == 0 {
			tr := <-got
			if len(tr) != 1 || tr.Get("X-Checksum") != "900150983cd24fb0" {
				t.Errorf("the endpoint got the trailers %v, want X-Checksum alone", tr)
			}
		}
	}
}
