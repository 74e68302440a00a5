package proxyproto

import (
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseV1(t *testing.T) {
	for _, tc := range []struct {
		in       string
		src, dst string
		local    bool
	}{
		{in: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", src: "192.0.2.1:56324", dst: "198.51.100.2:443"},
		{in: "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", src: "[2001:db8::1]:1", dst: "[2001:db8::2]:65535"},
		{in: "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", src: "255.255.255.255:65535", dst: "255.255.255.255:65535"},
		{in: "PROXY UNKNOWN\r\n", local: true},
		{in: "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", local: true},
	} {
		h, n, err := Parse([]byte(tc.in + "GET / HTTP/1.1\r\n"))
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if n != len(tc.in) || h.Version != 1 || h.Local != tc.local {
			t.Errorf("%q: n %d version %d local %v", tc.in, n, h.Version, h.Local)
		}
		if !tc.local && (h.Source != ap(tc.src) || h.Dest != ap(tc.dst)) {
			t.Errorf("%q: %v -> %v", tc.in, h.Source, h.Dest)
		}
	}
}

func TestParseV1Malformed(t *testing.T) {
	for _, in := range []string{
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",       // a port missing
		"PROXY TCP4 192.0.2.1  198.51.100.2 56324 443\r\n",  // two spaces
		"PROXY TCP4 2001:db8::1 198.51.100.2 56324 443\r\n", // family mismatch
		"PROXY TCP6 192.0.2.1 198.51.100.2 56324 443\r\n",   // family mismatch
		"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",   // port range
		"PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n",    // leading zero
		"PROXY TCP4 192.0.2.1 198.51.100.2 +443 443\r\n",    // sign
		"PROXY UDP4 192.0.2.1 198.51.100.2 56324 443\r\n",   // protocol
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n",     // bare LF
		"PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n",           // zone
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 1\r\n", // extra field
		"PROXY " + strings.Repeat("A", 120) + "\r\n",        // too long
	} {
		_, _, err := Parse([]byte(in))
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Version != 1 {
			t.Errorf("%q: err %v, want a v1 FormatError", in, err)
		}
	}
}

func TestParseDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", ErrIncomplete},
		{"P", ErrIncomplete},
		{"PROXY", ErrIncomplete},
		{"PROXY TCP4 192.0.2.1", ErrIncomplete},
		{"\r\n\r\n\x00", ErrIncomplete},
		{"\r\n\r\n\x00\r\nQUIT\n\x21\x11", ErrIncomplete},
		{"GET / HTTP/1.1\r\n", ErrNotProxy},
		{"PING\r\n", ErrNotProxy},
		{"PROXZ", ErrNotProxy},
		{"\r\n\r\n", ErrIncomplete},
		{"\r\n\r\nx", ErrNotProxy},
		{"\x16\x03\x01\x02\x00", ErrNotProxy}, // a TLS ClientHello
	} {
		if _, _, err := Parse([]byte(tc.in)); err != tc.want {
			t.Errorf("%q: %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestParseV2(t *testing.T) {
	// Written by hand from the specification, not by AppendV2.
	v4 := "0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" +
		"c0000201" + "c6336402" + "dc04" + "01bb"
	v6tlv := "0d0a0d0a000d0a515549540a" + "21" + "21" + "0029" +
		"20010db8000000000000000000000001" + "20010db8000000000000000000000002" + "0001" + "0050" +
		"04" + "0002" + "6869" // a NOOP TLV, skipped
	local := "0d0a0d0a000d0a515549540a" + "20" + "00" + "0000"
	unix := "0d0a0d0a000d0a515549540a" + "21" + "31" + "00d8" + strings.Repeat("00", 216)
	udp4 := "0d0a0d0a000d0a515549540a" + "21" + "12" + "000c" +
		"c0000201" + "c6336402" + "dc04" + "01bb"
	inetUnspec := "0d0a0d0a000d0a515549540a" + "21" + "10" + "000c" +
		"c0000201" + "c6336402" + "dc04" + "01bb"
	for _, tc := range []struct {
		name, hex string
		src, dst  string
		local     bool
	}{
		{"inet", v4, "192.0.2.1:56324", "198.51.100.2:443", false},
		{"inet6 with TLV", v6tlv, "[2001:db8::1]:1", "[2001:db8::2]:80", false},
		{"local", local, "", "", true},
		{"unix", unix, "", "", true},
		{"UDP over IPv4 is no TCP client", udp4, "", "", true},
		{"IPv4 without a transport", inetUnspec, "", "", true},
	} {
		raw, _ := hex.DecodeString(tc.hex)
		h, n, err := Parse(append(raw, "hello"...))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if n != len(raw) || h.Version != 2 || h.Local != tc.local {
			t.Errorf("%s: n %d of %d, version %d, local %v", tc.name, n, len(raw), h.Version, h.Local)
		}
		if !tc.local && (h.Source != ap(tc.src) || h.Dest != ap(tc.dst)) {
			t.Errorf("%s: %v -> %v", tc.name, h.Source, h.Dest)
		}
		for i := range len(raw) {
			if _, _, err := Parse(raw[:i]); err != ErrIncomplete {
				t.Fatalf("%s: %d of %d bytes: %v, want ErrIncomplete", tc.name, i, len(raw), err)
			}
		}
	}
}

func TestParseV2Malformed(t *testing.T) {
	sig := "0d0a0d0a000d0a515549540a"
	for name, in := range map[string]string{
		"version 1":   sig + "11" + "11" + "000c" + strings.Repeat("00", 12),
		"command 2":   sig + "22" + "11" + "000c" + strings.Repeat("00", 12),
		"short inet":  sig + "21" + "11" + "0008" + strings.Repeat("00", 8),
		"short inet6": sig + "21" + "21" + "000c" + strings.Repeat("00", 12),
		"family 4":    sig + "21" + "41" + "000c" + strings.Repeat("00", 12),
		"transport 3": sig + "21" + "13" + "000c" + strings.Repeat("00", 12),
	} {
		raw, _ := hex.DecodeString(in)
		var fe *FormatError
		if _, _, err := Parse(raw); !errors.As(err, &fe) || fe.Version != 2 {
			t.Errorf("%s: %v, want a v2 FormatError", name, err)
		}
	}
}

func TestAppendRoundTrip(t *testing.T) {
	for _, tc := range []struct{ src, dst, v1 string }{
		{"192.0.2.1:56324", "198.51.100.2:443", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"},
		{"[2001:db8::1]:1", "[2001:db8::2]:80", "PROXY TCP6 2001:db8::1 2001:db8::2 1 80\r\n"},
		// A v4 client on a dual-stack socket is said as TCP4.
		{"[::ffff:192.0.2.1]:5", "[::ffff:198.51.100.2]:6", "PROXY TCP4 192.0.2.1 198.51.100.2 5 6\r\n"},
	} {
		src, dst := ap(tc.src), ap(tc.dst)
		v1 := AppendV1(nil, src, dst)
		if string(v1) != tc.v1 {
			t.Errorf("AppendV1 = %q, want %q", v1, tc.v1)
		}
		for _, b := range [][]byte{v1, AppendV2(nil, src, dst)} {
			h, n, err := Parse(b)
			if err != nil || n != len(b) || h.Local {
				t.Fatalf("Parse(%q) = %+v, %d, %v", b, h, n, err)
			}
			if h.Source.Addr() != src.Addr().Unmap() || h.Source.Port() != src.Port() || h.Dest.Addr() != dst.Addr().Unmap() || h.Dest.Port() != dst.Port() {
				t.Errorf("v%d round trip: %v -> %v, want %v -> %v", h.Version, h.Source, h.Dest, src, dst)
			}
		}
	}
	// Of mixed families, the IPv4 address is said IPv4-mapped: the
	// client's address is not lost.
	if got := string(AppendV1(nil, ap("192.0.2.1:1"), ap("[2001:db8::2]:2"))); got != "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1 2\r\n" {
		t.Errorf("mixed families, v1: %q", got)
	}
	if h, _, err := Parse(AppendV2(nil, ap("[2001:db8::7]:1"), ap("192.0.2.1:2"))); err != nil || h.Source != ap("[2001:db8::7]:1") || h.Dest != ap("[::ffff:192.0.2.1]:2") {
		t.Errorf("mixed families, v2: %+v %v", h, err)
	}
	// Without addresses: UNKNOWN, LOCAL.
	if got := string(AppendV1(nil, netip.AddrPort{}, ap("192.0.2.1:2"))); got != "PROXY UNKNOWN\r\n" {
		t.Errorf("no address, v1: %q", got)
	}
	if h, _, err := Parse(AppendV2(nil, netip.AddrPort{}, netip.AddrPort{})); err != nil || !h.Local {
		t.Errorf("no address, v2: %+v %v", h, err)
	}
}

func TestRead(t *testing.T) {
	stream := "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n"
	// One byte per Read: the header arrives in pieces, and Read stops
	// where it ends.
	r := strings.NewReader(stream)
	h, rest, err := Read(iotest.OneByteReader(r), make([]byte, 256))
	if err != nil || h == nil || h.Source != ap("192.0.2.1:56324") {
		t.Fatalf("Read = %+v, %v", h, err)
	}
	if left, _ := io.ReadAll(r); len(rest) != 0 || string(left) != "GET / HTTP/1.1\r\n\r\n" {
		t.Errorf("rest %q, left in the stream %q", rest, left)
	}
	// Whole reads: the rest comes back with the header.
	h, rest, err = Read(strings.NewReader(stream), make([]byte, 256))
	if err != nil || h == nil || string(rest) != "GET / HTTP/1.1\r\n\r\n" {
		t.Errorf("Read = %+v, rest %q, %v", h, rest, err)
	}
	// No header: nothing is lost.
	h, rest, err = Read(strings.NewReader("PING\r\n"), make([]byte, 256))
	if err != nil || h != nil || string(rest) != "PING\r\n" {
		t.Errorf("no header: %+v, rest %q, %v", h, rest, err)
	}
	// The stream ends inside a header.
	if _, _, err := Read(strings.NewReader("PROXY TCP4 1.2"), make([]byte, 256)); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated: %v", err)
	}
	// A header longer than the buffer.
	if _, _, err := Read(strings.NewReader(stream), make([]byte, 20)); err == nil {
		t.Errorf("a 46-byte header fit a 20-byte buffer")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 80\r\nxyz"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(AppendV2(nil, ap("192.0.2.1:1"), ap("198.51.100.2:2")))
	f.Add(AppendV2(nil, ap("[2001:db8::1]:1"), ap("[2001:db8::2]:2")))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with length %d", err, n)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		if h.Version == 1 && n > MaxV1 {
			t.Fatalf("v1 header of %d bytes", n)
		}
		if h.Local {
			return
		}
		// What parsed must say the same when written again.
		var again []byte
		if h.Version == 1 {
			again = AppendV1(nil, h.Source, h.Dest)
		} else {
			again = AppendV2(nil, h.Source, h.Dest)
		}
		h2, _, err := Parse(again)
		if err != nil || h2.Source != h.Source || h2.Dest != h.Dest {
			// v2 may carry a v4-mapped address that v1 and v2 writing unmap.
			if h.Source.Addr().Is4In6() || h.Dest.Addr().Is4In6() {
				return
			}
			t.Fatalf("%+v written as %q parses as %+v, %v", h, again, h2, err)
		}
	})
}
