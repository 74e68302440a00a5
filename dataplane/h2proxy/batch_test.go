package h2proxy

import (
	"net/http"
	"slices"
	"testing"

	"golang.org/x/net/http2"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// TestSmallResponseEndsWithItsData: a response whose body came whole from
// the endpoint reaches the client as its HEADERS frame and one DATA frame
// that carries the body and ends the stream, not a DATA frame and then an
// empty one to end it: the node leaves the body's last piece to net/http,
// which sends it with the stream's end, in one write with the head.
func TestSmallResponseEndsWithItsData(t *testing.T) {
	ep := backendOf(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "6")
		w.Write([]byte("hello\n"))
	}, false)
	hs := httpproxy.NewServer(&httpproxy.Config{Director: pickDirector{ep}}, nil)
	up := NewUpstream(func(*upstream.Endpoint) Protocol { return Protocol{} })
	t.Cleanup(up.Close)
	cl := dialH2(t, serveOne(t, NewServer(hs, up, nil)))
	for stream := uint32(1); stream <= 5; stream += 2 {
		cl.get(stream)
		var frames []string
		var body []byte
		for ended := false; !ended; {
			f, err := cl.fr.ReadFrame()
			if err != nil {
				t.Fatalf("stream %d: reading: %v (frames so far: %v)", stream, err, frames)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					cl.fr.WriteSettingsAck()
				}
			case *http2.MetaHeadersFrame:
				frames = append(frames, "HEADERS")
				ended = f.StreamEnded()
			case *http2.DataFrame:
				body = append(body, f.Data()...)
				if f.StreamEnded() {
					frames = append(frames, "DATA+END")
				} else {
					frames = append(frames, "DATA")
				}
				ended = f.StreamEnded()
			case *http2.RSTStreamFrame, *http2.GoAwayFrame:
				t.Fatalf("stream %d: %v", stream, f)
			}
		}
		if got := string(body); got != "hello\n" {
			t.Errorf("stream %d: body %q, want %q", stream, got, "hello\n")
		}
		if want := []string{"HEADERS", "DATA+END"}; !slices.Equal(frames, want) {
			t.Errorf("stream %d: frames %v, want %v", stream, frames, want)
		}
	}
}
