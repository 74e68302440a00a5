package h2proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"testing/iotest"
)

// frame is an HTTP/2 frame's bytes.
func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[5:], stream)
	return append(b, payload...)
}

// settings is a SETTINGS payload of id, value pairs.
func settings(kv ...uint32) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = binary.BigEndian.AppendUint16(b, uint16(kv[i]))
		b = binary.BigEndian.AppendUint32(b, kv[i+1])
	}
	return b
}

// TestSettingsReader: a SETTINGS frame that repeats a setting reaches
// net/http with its last value only, in place; repeated
// HEADER_TABLE_SIZE and invalid values are left for net/http to refuse
// (the first invalid value alone); every other byte passes as it came,
// whatever the reads' sizes.
func TestSettingsReader(t *testing.T) {
	data := frame(0x0, 0x1, 1, []byte("hello")) // DATA
	for _, tt := range []struct {
		name    string
		in, out []byte
	}{
		{"no repeat", settings(4, 100, 3, 10), settings(4, 100, 3, 10)},
		{"h2spec 6.5.3", settings(4, 100, 4, 1), settings(4, 1)},
		{"last wins in place", settings(4, 100, 3, 10, 4, 7, 5, 1<<14), settings(3, 10, 4, 7, 5, 1<<14)},
		{"three times, two settings", settings(3, 1, 4, 9, 3, 2, 4, 8, 3, 5), settings(4, 8, 3, 5)},
		{"header table size kept", settings(1, 4096, 1, 0), settings(1, 4096, 1, 0)},
		{"first invalid kept alone", settings(4, 5, 4, 1<<31, 4, 6, 4, 1<<31+1), settings(4, 1<<31)},
		{"invalid push kept", settings(2, 0, 2, 2), settings(2, 2)},
		{"invalid frame size kept", settings(5, 1<<14, 5, 100), settings(5, 100)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]byte(h2Preface), frame(frameSettings, 0, 0, tt.in)...)
			in = append(in, data...)
			in = append(in, frame(frameSettings, flagAck, 0, nil)...)
			want := append([]byte(h2Preface), frame(frameSettings, 0, 0, tt.out)...)
			want = append(want, data...)
			want = append(want, frame(frameSettings, flagAck, 0, nil)...)
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
				got, err := io.ReadAll(newFrameReader(r, 0))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("got %x %v, want %x", got, err, want)
				}
			}
		})
	}
}

// TestSettingsReaderCut: a connection that ends in the middle of a frame
// hands on every byte that came, then the end.
func TestSettingsReaderCut(t *testing.T) {
	whole := append([]byte(h2Preface), frame(frameSettings, 0, 0, settings(4, 1, 4, 2))...)
	for n := range len(whole) {
		got, err := io.ReadAll(newFrameReader(bytes.NewReader(whole[:n]), 0))
		if err != nil || !bytes.Equal(got, whole[:n]) {
			t.Fatalf("cut at %d: got %x %v, want %x", n, got, err, whole[:n])
		}
	}
}
