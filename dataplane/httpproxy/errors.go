package httpproxy

import (
	"strconv"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// statusError is a request the proxy answers itself: its status, the short
// text/plain body, and the close reason reported when it ends the connection.
// The values are package-level so that failing costs no allocation.
type statusError struct {
	status int
	text   string // body, one line
	reason sluicev1.CloseReason
}

func (e *statusError) Error() string {
	return "httpproxy: " + strconv.Itoa(e.status) + " " + e.text
}

func badRequest(text string) *statusError {
	return &statusError{400, text, sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
}

var (
	errMalformed        = badRequest("malformed request head")
	errRequestLine      = badRequest("malformed request line")
	errTarget           = badRequest("invalid request target")
	errObsFold          = badRequest("obsolete line folding in header")
	errFieldName        = badRequest("invalid header field name")
	errFieldValue       = badRequest("invalid header field value")
	errHost             = badRequest("missing, repeated or invalid Host")
	errContentLength    = badRequest("invalid or conflicting Content-Length")
	errTEWithCL         = badRequest("Transfer-Encoding with Content-Length")
	errTENotChunked     = badRequest("Transfer-Encoding does not end with chunked")
	errTEHTTP10         = badRequest("Transfer-Encoding in an HTTP/1.0 request")
	errChunked          = badRequest("invalid chunked body")
	errLeadingLines     = badRequest("too many empty lines before the request")
	errTooManyFields    = &statusError{431, "too many header fields", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errHeadTooLarge     = &statusError{431, "request head too large", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errURITooLong       = &statusError{414, "request target too long", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errBodyTooLarge     = &statusError{413, "request body too large", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errVersion          = &statusError{505, "HTTP version not supported", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errConnect          = &statusError{501, "CONNECT is not supported", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errTransferCoding   = &statusError{501, "transfer coding not implemented", sluicev1.CloseReason_CLOSE_REASON_BAD_REQUEST}
	errRequestTimeout   = &statusError{408, "request head not received in time", sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT}
	errBodyTimeout      = &statusError{408, "request body not received in time", sluicev1.CloseReason_CLOSE_REASON_CLIENT_TIMEOUT}
	errNoEndpointStatus = &statusError{503, "no endpoint available", sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT}
	errConnectFailed    = &statusError{502, "could not connect to the endpoint", sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT}
	errBadResponse      = &statusError{502, "invalid response from the endpoint", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errServerClosed     = &statusError{502, "the endpoint closed the connection", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errServerIO         = &statusError{502, "connection to the endpoint failed", sluicev1.CloseReason_CLOSE_REASON_IO_ERROR}
	errDrained          = &statusError{502, "the endpoint was removed", sluicev1.CloseReason_CLOSE_REASON_DRAINED}
	errShutdown         = &statusError{502, "the endpoint's connections were shut down", sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN}
	errEndpointDown     = &statusError{502, "the endpoint went down", sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN}
	errResponseTimeout  = &statusError{504, "the endpoint did not answer in time", sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT}
)

// Errors from the response parser; they become a 502 (errBadResponse).
var (
	errRespMalformed     = &statusError{502, "malformed response head", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespInterims      = &statusError{502, "more than " + strconv.Itoa(MaxInterim) + " interim (1xx) responses", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespStatus        = &statusError{502, "malformed status line", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespFraming       = &statusError{502, "invalid response framing", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespTooLarge      = &statusError{502, "response head larger than 64 KiB", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespSwitching     = &statusError{502, "unexpected 101 Switching Protocols", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespChunked       = &statusError{502, "invalid chunked response body", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
	errRespTooManyFields = &statusError{502, "too many response header fields", sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED}
)

var statusText = map[int]string{
	400: "Bad Request",
	408: "Request Timeout",
	413: "Content Too Large",
	414: "URI Too Long",
	431: "Request Header Fields Too Large",
	501: "Not Implemented",
	502: "Bad Gateway",
	503: "Service Unavailable",
	504: "Gateway Timeout",
	505: "HTTP Version Not Supported",
}

// appendStatusResponse appends the proxy's own answer for e. keepAlive
// chooses Connection: close or (for an HTTP/1.0 client) keep-alive; head
// leaves the body out (HEAD request) but keeps its Content-Length.
func appendStatusResponse(b []byte, e *statusError, fields []byte, minor uint8, keepAlive, head bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, ' ')
	b = append(b, statusText[e.status]...)
	b = append(b, "\r\n"...)
	b = append(b, fields...)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-cache\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(e.text)+1), 10)
	switch {
	case !keepAlive:
		b = append(b, "\r\nConnection: close"...)
	case minor == 0:
		b = append(b, "\r\nConnection: keep-alive"...)
	}
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, e.text...)
		b = append(b, '\n')
	}
	return b
}
