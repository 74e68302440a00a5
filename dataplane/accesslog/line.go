package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/internal/reasons"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// appendLine appends e's line, newline included, to b: the fields
// log/slog's JSONHandler would write for a record at e.end, level INFO,
// message "request" (HTTP) or "session" (TCP), in the same order and
// encoding. It does not allocate.
func (e *entry) appendLine(b []byte, node string) []byte {
	b = append(b, `{"time":"`...)
	b = e.end.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"`...)
	tcp := e.proto == meter.ProtoTCP
	if tcp {
		b = append(b, "session"...)
	} else {
		b = append(b, "request"...)
	}
	b = append(b, '"')
	b = appendField(b, "node", node)
	b = appendField(b, "listener", e.listener)
	b = appendAddrField(b, "client", e.client)
	if e.peer.IsValid() {
		b = appendAddrField(b, "peer", e.peer)
	}
	b = appendField(b, "proto", e.proto)
	if !tcp {
		b = appendBytesField(b, "method", e.text[:e.method])
		b = appendBytesField(b, "host", e.text[e.method:e.host])
		b = appendBytesField(b, "path", e.text[e.host:e.path])
		if e.path < len(e.text) {
			b = appendBytesField(b, "request_id", e.text[e.path:])
		}
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.status), 10)
		if e.grpc > 0 {
			b = append(b, `,"grpc_status":`...)
			b = strconv.AppendInt(b, int64(e.grpc-1), 10)
		}
	}
	if e.rule != "" {
		b = appendField(b, "rule", e.rule)
	}
	if e.cluster != "" {
		b = appendField(b, "cluster", e.cluster)
		b = appendField(b, "endpoint", e.endpoint)
	}
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendUint(b, e.bytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendUint(b, e.bytesOut, 10)
	if e.connect > 0 {
		b = appendSeconds(b, "connect_seconds", e.connect)
	}
	if e.firstByte > 0 {
		b = appendSeconds(b, "first_byte_seconds", e.firstByte)
	}
	b = appendSeconds(b, "total_seconds", e.total)
	b = append(b, `,"retries":`...)
	b = strconv.AppendUint(b, uint64(e.retries), 10)
	if e.cause != sluicev1.CloseReason_CLOSE_REASON_UNSPECIFIED {
		b = appendField(b, "cause", reasons.Name(e.cause))
	}
	if e.detail != "" {
		b = appendField(b, "detail", e.detail)
	}
	return append(b, "}\n"...)
}

// appendAddrField appends ,"key":"a" for an address and port, or for the
// address alone when the port is 0: a client that a proxy's forwarding
// headers named without one.
func appendAddrField(b []byte, key string, a netip.AddrPort) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	if a.Port() == 0 && a.Addr().IsValid() {
		b = a.Addr().AppendTo(b)
	} else {
		b = a.AppendTo(b)
	}
	return append(b, '"')
}

// appendField appends ,"key":"value" (key needs no escaping).
func appendField(b []byte, key, value string) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendString(b, value)
}

// appendBytesField is appendField for a value in bytes.
func appendBytesField(b []byte, key string, value []byte) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendString(b, value)
}

// appendSeconds appends ,"key":d in seconds, as a JSON number.
func appendSeconds(b []byte, key string, d time.Duration) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return strconv.AppendFloat(b, d.Seconds(), 'f', -1, 64)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json and slog do. What clients send (paths, hosts) may hold
// anything the HTTP parser let through.
func appendString[T string | []byte](b []byte, s T) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
