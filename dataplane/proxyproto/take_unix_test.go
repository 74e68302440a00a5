//go:build unix

package proxyproto

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
)

// A header sent in two writes is taken off the socket, and the stream's
// own bytes after it are all still there to read.
func TestTakeSocket(t *testing.T) {
	for _, v := range []int{1, 2} {
		c, s := loopback.Pair(t)
		hdr := AppendV1(nil, ap("203.0.113.7:4242"), ap("127.0.0.1:80"))
		if v == 2 {
			hdr = AppendV2(nil, ap("203.0.113.7:4242"), ap("127.0.0.1:80"))
		}
		c.Write(hdr[:14])
		go func() {
			time.Sleep(20 * time.Millisecond)
			c.Write(append(hdr[14:], "hello"...))
			c.CloseWrite()
		}()
		h, err := Take(s, time.Now().Add(5*time.Second))
		if err != nil || h == nil || h.Source != ap("203.0.113.7:4242") || h.Version != v {
			t.Fatalf("v%d: Take = %+v, %v", v, h, err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if rest, err := io.ReadAll(s); string(rest) != "hello" || err != nil {
			t.Errorf("v%d: after the header the stream reads %q, %v", v, rest, err)
		}
	}
}

// Without a header nothing is consumed; with nothing sent the deadline
// ends the wait.
func TestTakeSocketNoHeader(t *testing.T) {
	c, s := loopback.Pair(t)
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.CloseWrite()
	h, err := Take(s, time.Now().Add(5*time.Second))
	if h != nil || err != nil {
		t.Fatalf("Take = %+v, %v", h, err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, _ := io.ReadAll(s); string(rest) != "GET / HTTP/1.1\r\n\r\n" {
		t.Errorf("the stream reads %q", rest)
	}

	_, s = loopback.Pair(t)
	if _, err := Take(s, time.Now().Add(50*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent peer: %v, want the deadline", err)
	}
}
