package tlsinspect

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// clientHello returns the first flight of a crypto/tls client asking for
// serverName ("" for none): one record holding its ClientHello.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: serverName == ""}
		tls.Client(c, cfg).Handshake() // fails when s closes
		c.Close()
	}()
	s.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// refragment splits the handshake bytes of one record into records of at
// most size bytes each.
func refragment(rec []byte, size int) []byte {
	var out []byte
	payload := rec[recordHeaderLen:]
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, recordHandshake, rec[1], rec[2], byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

func TestParse(t *testing.T) {
	hello := clientHello(t, "a.example")
	noSNI := clientHello(t, "")
	scratch := make([]byte, 2*MaxRecord)
	for _, tt := range []struct {
		name string
		data []byte
		want Hello
		more bool
	}{
		{"one record", hello, Hello{TLS: true, SNI: []byte("a.example")}, false},
		{"records of 7 bytes", refragment(hello, 7), Hello{TLS: true, SNI: []byte("a.example")}, false},
		{"records of 1 byte", refragment(hello, 1), Hello{TLS: true, SNI: []byte("a.example")}, false},
		{"followed by more", append(append([]byte{}, hello...), 23, 3, 3, 0, 1, 0), Hello{TLS: true, SNI: []byte("a.example")}, false},
		{"no server name", noSNI, Hello{TLS: true}, false},
		// A client sending early data follows its ClientHello with a
		// change_cipher_spec record and application data at once.
		{"records of 100 bytes followed by more", append(refragment(hello, 100), 20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 1, 0), Hello{TLS: true, SNI: []byte("a.example")}, false},
		{"records of 100 bytes followed by the start of more", append(refragment(hello, 100), 20, 3), Hello{TLS: true, SNI: []byte("a.example")}, false},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\n"), Hello{}, false},
		{"one plain byte", []byte("G"), Hello{}, false},
		{"nothing yet", nil, Hello{}, true},
		{"header only", hello[:5], Hello{TLS: true}, true},
		{"half the hello", hello[:len(hello)/2], Hello{TLS: true}, true},
		{"wrong version", []byte{22, 2, 0, 0, 10}, Hello{}, false},
		{"empty record", []byte{22, 3, 1, 0, 0}, Hello{}, false},
		{"oversized record", []byte{22, 3, 1, 0x40, 1}, Hello{}, false},
		{"server hello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, Hello{}, false},
		{"alert between fragments", append(refragment(hello, 50)[:55], 21, 3, 3, 0, 2, 2, 40), Hello{}, false},
		{"malformed body", []byte{22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}, Hello{TLS: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, more := Parse(tt.data, scratch)
			if h.TLS != tt.want.TLS || !bytes.Equal(h.SNI, tt.want.SNI) || more != tt.more {
				t.Errorf("Parse = {TLS %v SNI %q} more %v, want {TLS %v SNI %q} more %v", h.TLS, h.SNI, more, tt.want.TLS, tt.want.SNI, tt.more)
			}
		})
	}
}

// TestParseByteByByte feeds a fragmented ClientHello as if every TCP read
// brought one byte: Parse asks for more until the last byte, then names
// the server.
func TestParseByteByByte(t *testing.T) {
	data := refragment(clientHello(t, "b.example"), 100)
	scratch := make([]byte, len(data))
	for n := 0; n < len(data); n++ {
		h, more := Parse(data[:n], scratch)
		if !more || h.SNI != nil || (n > 0 && !h.TLS) {
			t.Fatalf("after %d of %d bytes: {TLS %v SNI %q} more %v, want TLS, no SNI, more", n, len(data), h.TLS, h.SNI, more)
		}
	}
	if h, more := Parse(data, scratch); more || string(h.SNI) != "b.example" {
		t.Fatalf("whole: SNI %q more %v", h.SNI, more)
	}
}

func TestParseAllocs(t *testing.T) {
	data := refragment(clientHello(t, "a.example"), 64)
	scratch := make([]byte, len(data))
	if n := testing.AllocsPerRun(100, func() { Parse(data, scratch) }); n != 0 {
		t.Errorf("Parse allocates %v times, want 0", n)
	}
}

// FuzzParse checks that Parse never panics, that an SNI it returns is a
// non-empty host name without a final dot, and that cutting the handshake
// into other records changes nothing of the answer.
func FuzzParse(f *testing.F) {
	f.Add(clientHello(f, "a.example"), 3)
	f.Add(clientHello(f, ""), 100)
	f.Add(refragment(clientHello(f, "x.b.example"), 9), 1)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 5)
	f.Add([]byte{22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}, 2)
	scratch := make([]byte, 4*MaxRecord)
	f.Fuzz(func(t *testing.T, data []byte, size int) {
		if len(data) > 2*MaxRecord {
			return
		}
		h, more := Parse(data, scratch)
		if h.SNI != nil && (!h.TLS || more || len(h.SNI) == 0 || h.SNI[len(h.SNI)-1] == '.') {
			t.Fatalf("SNI %q with TLS %v more %v", h.SNI, h.TLS, more)
		}
		sni := string(h.SNI)
		// Re-cut a complete single-record hello into records of size.
		if more || !h.TLS || len(data) < recordHeaderLen || size <= 0 {
			return
		}
		n := int(data[3])<<8 | int(data[4])
		if len(data) != recordHeaderLen+n {
			return
		}
		h2, more2 := Parse(refragment(data, size), scratch)
		if string(h2.SNI) != sni || h2.TLS != h.TLS || more2 {
			t.Fatalf("records of %d: SNI %q TLS %v more %v; one record: SNI %q TLS %v", size, h2.SNI, h2.TLS, more2, sni, h.TLS)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for _, size := range []int{MaxRecord, 100} {
		data := refragment(clientHello(b, "a.example"), size)
		scratch := make([]byte, len(data))
		b.Run(fmt.Sprintf("records of %d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if h, _ := Parse(data, scratch); len(h.SNI) == 0 {
					b.Fatal("no SNI")
				}
			}
		})
	}
}
