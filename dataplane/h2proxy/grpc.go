package h2proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file holds what the engine knows of gRPC beyond HTTP/2: how a
// gRPC client is told that its call was cut.

// isGRPC reports whether r is a gRPC call (RFC-less, but every gRPC
// implementation sends it: content-type application/grpc, +proto, +json...).
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

// endGRPC ends a gRPC response whose endpoint failed after the response
// head was relayed, with a status in the trailers, which a gRPC client
// reads as the call's status, rather than with RST_STREAM INTERNAL_ERROR
// (all net/http can send), which it reads as an internal error. A call
// whose grpc-timeout ran out is DEADLINE_EXCEEDED: a gRPC server resets the
// stream (CANCEL) at the deadline it was given, and the client, seeing
// CANCEL itself, would have said the same. Anything else is UNAVAILABLE,
// what gRPC says of a lost connection (and Envoy of an upstream reset),
// with text, the proxy's word for why (cut). The status is st's, for the
// access log.
func endGRPC(w http.ResponseWriter, r *http.Request, st *stream, start time.Time, text string) {
	code, msg := 14, grpcMessage(text) // UNAVAILABLE
	if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok && time.Since(start) >= d {
		code, msg = 4, "deadline exceeded" // DEADLINE_EXCEEDED
	}
	h := w.Header()
	h[http.TrailerPrefix+"Grpc-Status"] = []string{strconv.Itoa(code)}
	h[http.TrailerPrefix+"Grpc-Message"] = []string{msg}
	st.mx.SetGRPCStatus(code)
}

// endedGRPC records in st the status of a gRPC call the endpoint answered
// in full: grpc-status in its trailers, or in its only header block
// (trailers-only, as a server refuses a call).
func endedGRPC(st *stream, resp *http.Response) {
	v, ok := resp.Trailer["Grpc-Status"]
	if !ok {
		v = resp.Header["Grpc-Status"]
	}
	if len(v) == 0 {
		return
	}
	if code, err := strconv.Atoi(v[0]); err == nil {
		st.mx.SetGRPCStatus(code)
	}
}

// grpcAnswer answers a gRPC call with one of the proxy's own refusals or
// failures (status, text: a 503 of no endpoint, a 403 of a deny) as a
// gRPC status, in a trailers-only response (HTTP 200, grpc-status and
// grpc-message in its only header block), as a gRPC server refuses a call
// itself: a gRPC client reads an HTTP error as an unexpected status and
// content-type, and drops the proxy's text. The code is the one gRPC's
// table of HTTP statuses gives (doc/http-grpc-status-mapping.md): 502,
// 503 and 504 are UNAVAILABLE, which a client may retry. The request's
// id goes with it when the client gets ids (req.ResponseID).
func grpcAnswer(w http.ResponseWriter, st *stream, status int, text string, last bool) {
	req := &st.req
	h := w.Header()
	clear(h)
	code := grpcCode(status)
	st.mx.SetGRPCStatus(code)
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", grpcMessage(text))
	if name, id := req.ResponseID(); name != "" {
		h.Set(name, string(id))
	}
	if last {
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)
}

// grpcCode is the gRPC status code of an HTTP status.
func grpcCode(status int) int {
	switch status {
	case http.StatusBadRequest:
		return 13 // INTERNAL
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusForbidden:
		return 7 // PERMISSION_DENIED
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// grpcMessage percent-encodes text as grpc-message wants it: every byte
// outside printable ASCII, and '%'.
func grpcMessage(text string) string {
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// parseGRPCTimeout parses a grpc-timeout value: at most 8 ASCII digits and
// a unit, H, M, S, m (milli), u (micro) or n (nano).
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	var n int64
	for _, c := range []byte(v[:len(v)-1]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	// 99999999 hours overflows a Duration: cap at its largest.
	if unit == time.Hour && n > int64(time.Duration(1<<63-1)/time.Hour) {
		return time.Duration(1<<63 - 1), true
	}
	return time.Duration(n) * unit, true
}
