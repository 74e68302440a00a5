package h2proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"golang.org/x/net/http2/hpack"
)

// FuzzFrameReader: whatever a client sends, the reader never fails on
// its own, gives the same bytes however it is read, and changes nothing
// but what it means to: a SETTINGS frame's payload (the same frame, of
// the same type, flags and stream), and a header block that it makes
// net/http reset (a HEADERS frame rewritten by selfDependent, or a
// CONTINUATION frame followed by one more). Every other frame is byte
// for byte what came.
func FuzzFrameReader(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, hf := range []string{":method", ":path", "connection", "te"} {
		enc.WriteField(hpack.HeaderField{Name: hf, Value: "x"})
	}
	bad := hb.Bytes()
	pre := []byte(h2Preface)
	f.Add(append(pre, frame(frameSettings, 0, 0, settings(4, 100, 4, 1))...))
	f.Add(append(pre, frame(frameHeaders, 0x5, 1, []byte{0x82, 0x86})...))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x0c\x04\x00\x00\x00\x00\x00\x00\x01\x00\x00\x10\x00\x00\x01\x00\x00\x00\x00"))
	f.Add(append(pre, frame(frameHeaders, 0x5, 1, bad)...))
	f.Add(bytes.Join([][]byte{pre, frame(frameHeaders, 0x2d, 3, append([]byte{1, 0, 0, 0, 1, 9}, append(bad, 0)...)), frame(frameHeaders, 0x5, 5, bad[3:])}, nil))
	f.Add(bytes.Join([][]byte{pre, frame(frameHeaders, 0x1, 1, bad[:2]), frame(frameContinuation, 0, 1, bad[2:3]), frame(frameContinuation, 0x4, 1, bad[3:])}, nil))
	f.Add(bytes.Join([][]byte{pre, frame(frameHeaders, 0x1, 1, bad[:3]), frame(0x0, 0x1, 1, []byte("data")), frame(frameHeaders, 0x4, 3, bad)}, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := io.ReadAll(newFrameReader(bytes.NewReader(in), 0))
		if err != nil {
			t.Fatal(err)
		}
		small, err := io.ReadAll(newFrameReader(iotest.OneByteReader(bytes.NewReader(in)), 0))
		if err != nil || !bytes.Equal(got, small) {
			t.Fatalf("one byte at a time: %x %v, want %x", small, err, got)
		}
		n := min(len(in), len(h2Preface))
		if !bytes.Equal(got[:n], in[:n]) {
			t.Fatalf("preface changed: %x", got[:n])
		}
		in, got = in[n:], got[n:]
		for len(in) >= frameHeaderLen {
			length := int(in[0])<<16 | int(in[1])<<8 | int(in[2])
			end := min(len(in), frameHeaderLen+length)
			if len(got) >= end && bytes.Equal(in[:end], got[:end]) {
				in, got = in[end:], got[end:]
				continue
			}
			if end < frameHeaderLen+length {
				t.Fatalf("frame cut short %x became %x", in, got)
			}
			if in[3] == frameSettings {
				glen := int(got[0])<<16 | int(got[1])<<8 | int(got[2])
				if !bytes.Equal(in[3:frameHeaderLen], got[3:frameHeaderLen]) || glen > length || glen%settingLen != 0 {
					t.Fatalf("SETTINGS frame %x became %x", in[:end], got[:frameHeaderLen+glen])
				}
				in, got = in[end:], got[frameHeaderLen+glen:]
				continue
			}
			want := rewritten(in[:end])
			if want == nil || !bytes.HasPrefix(got, want) {
				t.Fatalf("frame %x became %x", in[:end], got[:min(len(got), end+frameHeaderLen+priorityLen)])
			}
			in, got = in[end:], got[len(want):]
		}
		if !bytes.Equal(in, got) {
			t.Fatalf("trailing bytes %x became %x", in, got)
		}
	})
}

// rewritten is what f, a HEADERS or CONTINUATION frame, becomes when the
// reader makes net/http reset its stream; nil for other frames.
func rewritten(f []byte) []byte {
	typ, flags := f[3], f[4]
	stream := binary.BigEndian.Uint32(f[5:]) & (1<<31 - 1)
	switch typ {
	case frameContinuation:
		if flags&flagEndHeaders == 0 {
			return nil
		}
		g := bytes.Clone(f)
		g[4] &^= flagEndHeaders
		return append(g, frame(frameContinuation, flagEndHeaders, stream, badFieldMarker)...)
	case frameHeaders:
		p := f[frameHeaderLen:]
		pad, weight := 0, byte(15)
		if flags&flagPadded != 0 {
			if len(p) == 0 {
				return nil
			}
			pad, p = int(p[0]), p[1:]
		}
		if flags&flagPriority != 0 {
			if len(p) < 5 {
				return nil
			}
			weight, p = p[4], p[5:]
		}
		if len(p) < pad {
			return nil
		}
		payload := binary.BigEndian.AppendUint32(nil, stream)
		payload = append(append(payload, weight), p[:len(p)-pad]...)
		flags = flags&^flagPadded | flagPriority
		if len(payload) <= maxFrame {
			return frame(frameHeaders, flags, stream, payload)
		}
		return append(frame(frameHeaders, flags&^flagEndHeaders, stream, payload[:maxFrame]),
			frame(frameContinuation, flags&flagEndHeaders, stream, payload[maxFrame:])...)
	}
	return nil
}

// BenchmarkFrameReader reads a connection of requests as a browser or
// h2load sends them (a HEADERS frame each, its fields indexed after the
// first, and a small DATA frame) through a frameReader, with and without
// following header blocks. ns/op is per request.
func BenchmarkFrameReader(b *testing.B) {
	var in bytes.Buffer
	in.WriteString(h2Preface)
	in.Write(frame(frameSettings, 0, 0, settings(3, 100, 4, 1<<20)))
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	const n = 1000
	for i := range n {
		hb.Reset()
		for _, hf := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "127.0.0.1:19480"}, {":path", "/"},
			{"user-agent", "h2load nghttp2/1.59.0"}, {"accept", "*/*"}, {"accept-encoding", "gzip, deflate"}, {"content-length", "4"}} {
			enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
		}
		in.Write(frame(frameHeaders, flagEndHeaders, uint32(2*i+1), hb.Bytes()))
		in.Write(frame(0x0, 0x1, uint32(2*i+1), []byte("body")))
	}
	for _, follow := range []bool{false, true} {
		b.Run(fmt.Sprintf("headers=%v", follow), func(b *testing.B) {
			p := make([]byte, 32<<10)
			for b.Loop() {
				r := newFrameReader(bytes.NewReader(in.Bytes()), 0)
				if !follow {
					r.hdr = nil
				}
				// As net/http reads: the preface, then a frame header and its
				// payload at a time.
				io.ReadFull(r, p[:len(h2Preface)])
				for {
					if _, err := io.ReadFull(r, p[:frameHeaderLen]); err != nil {
						break
					}
					length := int(p[0])<<16 | int(p[1])<<8 | int(p[2])
					if _, err := io.ReadFull(r, p[:length]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/req")
		})
	}
}
