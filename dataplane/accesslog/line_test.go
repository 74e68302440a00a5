package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/internal/reasons"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// slogLine is e's line as log/slog's JSONHandler writes it: the reference
// appendLine keeps to.
func slogLine(e *entry, node string) []byte {
	var out bytes.Buffer
	addr := func(a netip.AddrPort) string {
		if a.Port() == 0 {
			return a.Addr().String()
		}
		return a.String()
	}
	a := []slog.Attr{slog.String("node", node), slog.String("listener", e.listener), slog.String("client", addr(e.client))}
	if e.peer.IsValid() {
		a = append(a, slog.String("peer", addr(e.peer)))
	}
	a = append(a, slog.String("proto", e.proto))
	msg := "session"
	if e.proto != meter.ProtoTCP {
		msg = "request"
		a = append(a, slog.String("method", string(e.text[:e.method])), slog.String("host", string(e.text[e.method:e.host])),
			slog.String("path", string(e.text[e.host:e.path])))
		if e.path < len(e.text) {
			a = append(a, slog.String("request_id", string(e.text[e.path:])))
		}
		a = append(a, slog.Int("status", e.status))
		if e.grpc > 0 {
			a = append(a, slog.Int("grpc_status", e.grpc-1))
		}
	}
	if e.rule != "" {
		a = append(a, slog.String("rule", e.rule))
	}
	if e.cluster != "" {
		a = append(a, slog.String("cluster", e.cluster), slog.String("endpoint", e.endpoint))
	}
	a = append(a, slog.Uint64("bytes_in", e.bytesIn), slog.Uint64("bytes_out", e.bytesOut))
	if e.connect > 0 {
		a = append(a, slog.Float64("connect_seconds", e.connect.Seconds()))
	}
	if e.firstByte > 0 {
		a = append(a, slog.Float64("first_byte_seconds", e.firstByte.Seconds()))
	}
	a = append(a, slog.Float64("total_seconds", e.total.Seconds()), slog.Uint64("retries", uint64(e.retries)))
	if e.cause != 0 {
		a = append(a, slog.String("cause", reasons.Name(e.cause)))
	}
	if e.detail != "" {
		a = append(a, slog.String("detail", e.detail))
	}
	r := slog.NewRecord(e.end, slog.LevelInfo, msg, 0)
	r.AddAttrs(a...)
	slog.NewJSONHandler(&out, nil).Handle(context.Background(), r)
	return out.Bytes()
}

// TestLineIsSlogJSON: appendLine writes what slog's JSONHandler writes for
// the same fields, byte for byte, escapes included.
func TestLineIsSlogJSON(t *testing.T) {
	end := time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	for _, e := range []*entry{
		{listener: "public", cluster: "web", endpoint: "a", proto: meter.ProtoHTTP11, client: netip.MustParseAddrPort("[::1]:80"),
			end: end, text: []byte("GETexample.com/a?b=\"c\"\\\x01\xff\u00e9"), method: 3, host: 14, path: 27, status: 200,
			bytesIn: 1, bytesOut: 2, connect: 1500 * time.Microsecond, firstByte: time.Millisecond, total: 3 * time.Second, retries: 2},
		{listener: "db", proto: meter.ProtoTCP, client: netip.MustParseAddrPort("10.0.0.1:5"), end: end,
			total: 90 * time.Minute, cause: sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN},
		{listener: "public", rule: "api-rate", proto: meter.ProtoHTTP2, client: netip.MustParseAddrPort("10.0.0.1:5"), end: end,
			text: []byte("GETa/api/"), method: 3, host: 4, path: 9, status: 429, bytesOut: 18, total: time.Millisecond},
		{listener: "public", proto: meter.ProtoHTTP11, client: netip.MustParseAddrPort("[2001:db8::7]:0"), peer: netip.MustParseAddrPort("10.0.0.1:5"),
			end: end, text: []byte("GETa/"), method: 3, host: 4, path: 5, status: 200, total: time.Millisecond},
		{listener: "public", proto: meter.ProtoHTTP11, client: netip.MustParseAddrPort("192.0.2.7:4711"), peer: netip.MustParseAddrPort("[::1]:5"),
			end: end, text: []byte("GETa/9b2f6c1e-4a51-4c1b-8e0e-2f6d2c1b0a9f"), method: 3, host: 4, path: 5, status: 200, total: time.Millisecond},
		{listener: "public", proto: meter.ProtoHTTP2, client: netip.MustParseAddrPort("192.0.2.7:4711"),
			end: end, text: []byte("GETa/x\"id\\"), method: 3, host: 4, path: 6, status: 200, total: time.Millisecond},
		{listener: "grpc", cluster: "g", endpoint: "g1", proto: meter.ProtoHTTP2, client: netip.MustParseAddrPort("10.0.0.1:5"),
			end: end, text: []byte("POSTa/pkg.Svc/Get"), method: 4, host: 5, path: 17, status: 200, grpc: 1, total: time.Millisecond},
		{listener: "grpc", proto: meter.ProtoHTTP2, client: netip.MustParseAddrPort("10.0.0.1:5"),
			end: end, text: []byte("POSTa/pkg.Svc/Get"), method: 4, host: 5, path: 17, status: 503, grpc: 15, total: time.Millisecond},
		{listener: "db", rule: "rules[1]", cluster: "db2", endpoint: "b", proto: meter.ProtoTCP, client: netip.MustParseAddrPort("10.0.0.1:5"),
			end: end, total: time.Second, cause: sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED},
		{listener: "edge", proto: meter.ProtoTCP, client: netip.MustParseAddrPort("10.0.0.1:5"), end: end, total: time.Millisecond,
			cause: sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST, detail: "malformed PROXY v1 header: \"PROXY TCP4 x\""},
	} {
		got, want := e.appendLine(nil, "n\"1"), slogLine(e, "n\"1")
		if !bytes.Equal(got, want) {
			t.Errorf("line\n got %s\nwant %s", got, want)
		}
	}
}

// FuzzAppendString: whatever a client sends, the line stays valid JSON
// and says what was sent (each invalid UTF-8 byte replaced, as slog and
// encoding/json do).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "/a?b=c", "\"\\\n\r\t\x00\x1f\x7f", "\xff\xfe", "é€😀", "\xe2\x82"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, []byte(s))
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes as %s, not JSON: %v", s, b, err)
		}
		// Each invalid byte becomes U+FFFD, as ranging over s reads it.
		var want strings.Builder
		for _, r := range s {
			want.WriteRune(r)
		}
		if got != want.String() {
			t.Errorf("%q round-trips as %q, want %q", s, got, want.String())
		}
		if !bytes.Equal(b, appendString(nil, s)) {
			t.Errorf("string and []byte encodings of %q differ", s)
		}
	})
}
