package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"
)

// chunkStream is a socket whose bytes arrive in chunks: each peek that
// finds nothing new unread makes the next chunk arrive (a peek with
// nothing left to arrive is the end of the stream).
type chunkStream struct {
	data     []byte
	arrived  int // data[:arrived] reached the socket
	consumed int // data[:consumed] was taken off it
	chunks   []int
	peeks    int
	stuck    int
}

func (s *chunkStream) peek(p []byte) (int, error) {
	s.peeks++
	if s.arrived == s.consumed && len(s.chunks) > 0 {
		s.arrived = min(s.arrived+s.chunks[0], len(s.data))
		s.chunks = s.chunks[1:]
	} else if s.peeks > 1 && len(s.chunks) > 0 {
		// Re-peeking without having consumed: let more arrive too, as
		// the sleep in take waits for.
		s.arrived = min(s.arrived+s.chunks[0], len(s.data))
		s.chunks = s.chunks[1:]
	}
	if s.arrived == len(s.data) && s.arrived > s.consumed {
		if s.stuck++; s.stuck > 100 {
			// All arrived, none consumed, again and again: take would
			// wait for the deadline, which these tests do not set.
			return 0, errStuck
		}
	}
	return copy(p, s.data[s.consumed:s.arrived]), nil
}

var errStuck = errors.New("peeked the same bytes 100 times")

func (s *chunkStream) consume(p []byte) error {
	if s.consumed+len(p) > s.arrived {
		return errors.New("consumed bytes that were not peeked")
	}
	if !bytes.Equal(p, s.data[s.consumed:s.consumed+len(p)]) {
		return errors.New("consumed bytes differ from the stream")
	}
	s.consumed += len(p)
	return nil
}

func noSleep(t testing.TB) {
	old := sleep
	sleep = func(time.Duration) {}
	t.Cleanup(func() { sleep = old })
}

func streamOf(data string, chunks ...int) *chunkStream {
	if len(chunks) == 0 {
		chunks = []int{len(data)}
	}
	return &chunkStream{data: []byte(data), chunks: chunks}
}

func TestTake(t *testing.T) {
	noSleep(t)
	v2 := string(AppendV2(nil, ap("[2001:db8::1]:1000"), ap("[2001:db8::2]:443")))
	const req = "GET / HTTP/1.1\r\n\r\n"
	const v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
	for _, tc := range []struct {
		name   string
		s      *chunkStream
		src    string // "" no header; "local" a header with no address
		header int    // bytes the header takes
	}{
		{"v1 whole", streamOf(v1 + req), "192.0.2.1:56324", len(v1)},
		{"v1 byte by byte", streamOf(v1+req, ones(80)...), "192.0.2.1:56324", len(v1)},
		{"v1 unknown", streamOf("PROXY UNKNOWN\r\n" + req), "local", 15},
		{"v2 whole", streamOf(v2 + req), "[2001:db8::1]:1000", len(v2)},
		{"v2 in pieces", streamOf(v2+req, 3, 10, 2, 20, 100), "[2001:db8::1]:1000", len(v2)},
		{"v2 local", streamOf(string(AppendV2(nil, netip.AddrPort{}, netip.AddrPort{})) + req), "local", 16},
		{"http", streamOf(req), "", 0},
		{"propfind", streamOf("PROPFIND / HTTP/1.1\r\n\r\n", 3, 30), "", 0},
		{"crlf then get", streamOf("\r\n\r\nGET / HTTP/1.1\r\n\r\n", 4, 30), "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := take(tc.s, time.Time{})
			if err != nil {
				t.Fatalf("take: %v", err)
			}
			switch {
			case tc.src == "" && h != nil:
				t.Fatalf("header %+v in a stream without one", h)
			case tc.src == "local" && (h == nil || !h.Local):
				t.Fatalf("header %+v, want a local one", h)
			case tc.src != "" && tc.src != "local" && (h == nil || h.Source != ap(tc.src)):
				t.Fatalf("header %+v, want source %s", h, tc.src)
			}
			if tc.s.consumed != tc.header {
				t.Errorf("consumed %d bytes, want exactly the header's %d", tc.s.consumed, tc.header)
			}
		})
	}
}

func ones(n int) []int {
	c := make([]int, n)
	for i := range c {
		c[i] = 1
	}
	return c
}

func TestTakeErrors(t *testing.T) {
	noSleep(t)
	var fe *FormatError
	if _, err := take(streamOf("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), time.Time{}); !errors.As(err, &fe) {
		t.Errorf("malformed v1: %v", err)
	}
	if _, err := take(streamOf("PROXY TCP4 1.2"), time.Time{}); err != io.ErrUnexpectedEOF {
		t.Errorf("stream ends in a header: %v", err)
	}
	if _, err := take(streamOf(""), time.Time{}); err != io.EOF {
		t.Errorf("empty stream: %v", err)
	}
	big := AppendV2(nil, ap("192.0.2.1:1"), ap("192.0.2.2:2"))
	big[14], big[15] = 0x10, 0 // 4096 bytes of addresses and TLVs
	big = append(big, make([]byte, 4096)...)
	if _, err := take(streamOf(string(big)), time.Time{}); !errors.As(err, &fe) {
		t.Errorf("v2 header over MaxTake: %v", err)
	}
	// Refused on its first 16 bytes, which declare the length, not once
	// MaxTake bytes came: this sender stops after 100.
	short := &chunkStream{data: big[:100], chunks: []int{100}}
	if _, err := take(short, time.Time{}); !errors.As(err, &fe) || fe.Reason != "declares 4112 bytes, longer than 2048" {
		t.Errorf("v2 header declaring more than MaxTake, 100 bytes sent: %v", err)
	}
	// The start of a signature and nothing more: the deadline ends it.
	s := &chunkStream{data: []byte("PRO"), chunks: []int{3}}
	if _, err := take(s, time.Now().Add(-time.Second)); err != os.ErrDeadlineExceeded {
		t.Errorf("a signature's start until the deadline: %v", err)
	}
}

func FuzzTake(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /"), []byte{5, 40, 1})
	f.Add(append(AppendV2(nil, ap("192.0.2.1:1"), ap("198.51.100.2:2")), "hello"...), []byte{1, 1, 13, 100})
	f.Add([]byte("PROPFIND / HTTP/1.1\r\n"), []byte{2, 2, 2})
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), []byte{8, 8})
	f.Fuzz(func(t *testing.T, data, chunks []byte) {
		noSleep(t)
		cs := &chunkStream{data: data}
		for _, c := range chunks {
			cs.chunks = append(cs.chunks, int(c)+1)
		}
		cs.chunks = append(cs.chunks, len(data)+1) // then the rest
		h, err := take(cs, time.Time{})
		want, size, perr := Parse(data)
		switch {
		case perr == nil && size <= MaxTake:
			if err != nil || h == nil || *h != want || cs.consumed != size {
				t.Fatalf("take = %+v, %v, consumed %d; Parse = %+v, %d", h, err, cs.consumed, want, size)
			}
		case perr == ErrNotProxy:
			if err != nil || h != nil || cs.consumed != 0 {
				t.Fatalf("no header: take = %+v, %v, consumed %d", h, err, cs.consumed)
			}
		default:
			// A bad, truncated or huge header: an error, and nothing
			// consumed past where the header would have ended.
			if err == nil {
				t.Fatalf("take = %+v with no error; Parse says %v", h, perr)
			}
		}
		if perr == nil && cs.consumed > size {
			t.Fatalf("consumed %d bytes past a %d-byte header", cs.consumed, size)
		}
	})
}
