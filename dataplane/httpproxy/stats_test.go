package httpproxy

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// An endpoint's counters tell what it was sent and what it answered: one
// request per exchange, every byte each way (spliced bodies included), and
// its 5xx answers apart from the others.
func TestEndpointStatsCountExchanges(t *testing.T) {
	b := startBackend(t, "b1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		size, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("X-Got", strconv.FormatInt(n, 10))
		w.Write(bytes.Repeat([]byte("x"), size))
	}))
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{b.ep}}})
	client := keepAliveClient()
	do := func(method, path string, body []byte) int {
		req, _ := http.NewRequestWithContext(testCtx(t), method, "http://"+p.addr+path, bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const up, down = 3 << 20, 2 << 20 // large enough to be spliced
	if code := do("POST", "/?n="+strconv.Itoa(down), make([]byte, up)); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code := do("GET", "/?n=10", nil); code != 200 {
		t.Fatalf("status %d", code)
	}
	if code := do("GET", "/fail", nil); code != 503 {
		t.Fatalf("status %d, want the endpoint's 503", code)
	}
	st := b.ep.Stats()
	if st.Requests != 3 {
		t.Errorf("Requests = %d, want 3", st.Requests)
	}
	if st.Responses5xx != 1 {
		t.Errorf("Responses5xx = %d, want 1", st.Responses5xx)
	}
	if st.ConnectErrors != 0 {
		t.Errorf("ConnectErrors = %d, want 0", st.ConnectErrors)
	}
	// Heads add some hundreds of bytes to the bodies.
	if st.BytesOut < up || st.BytesOut > up+2000 {
		t.Errorf("BytesOut = %d, want the %d-byte upload plus heads", st.BytesOut, up)
	}
	if st.BytesIn < down+10 || st.BytesIn > down+10+2000 {
		t.Errorf("BytesIn = %d, want the %d-byte download plus heads", st.BytesIn, down+10)
	}
}

// A connect that fails is counted against the endpoint it was for.
func TestEndpointStatsCountConnectErrors(t *testing.T) {
	ln := listen(t)
	dead := upstream.New("web", "dead", ln.Addr().String())
	ln.Close()
	p := startProxy(t, &Config{Director: &rrDirector{eps: []*upstream.Endpoint{dead}}})
	resp, err := keepAliveClient().Get("http://" + p.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 && resp.StatusCode != 502 {
		t.Fatalf("status %d, want the proxy's own 502 or 503", resp.StatusCode)
	}
	if st := dead.Stats(); st.ConnectErrors != 1 || st.Requests != 1 {
		t.Errorf("Stats = %+v, want 1 request, 1 connect error", st)
	}
}
