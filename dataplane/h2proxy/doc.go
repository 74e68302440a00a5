// Package h2proxy is Sluice's HTTP/2 engine: it serves the client
// connections of an HTTP listener that speak HTTP/2 (ALPN "h2" on TLS,
// h2c with prior knowledge on a plain listener with http.h2c), and
// forwards requests to endpoints that speak HTTP/2 (clusters with
// http2: h2c, or h2 over TLS), which is what gRPC needs end to end.
//
// # Why net/http
//
// The HTTP/1.1 engine (dataplane/httpproxy) is hand-written and allocates
// nothing per request; HTTP/2 is another matter: framing, HPACK, flow
// control, stream states and their error handling are where conformance
// (h2spec) and safety (rapid reset, CONTINUATION floods, SETTINGS abuse)
// are won or lost, and Go's own implementation has had a decade of that
// hardening. So the framing is net/http's: each client connection is
// served by a net/http server of its own (one per connection, which is
// what gives every connection its own GOAWAY), and endpoints are spoken to
// through net/http client connections (http.Transport.NewClientConn), one
// pool of them per endpoint. golang.org/x/net/http2 is the same code and
// now defers to net/http, so it is not used directly. Two things net/http
// does against the RFC are undone in front of it, by frameReader
// (frames.go): it refuses a SETTINGS frame that repeats a setting, which
// is rewritten (settings.go), and it answers a request with a
// connection-specific field, or TE other than "trailers", 400 from its
// own code where the request must be reset, which it is made to do
// (headers.go). What is Sluice's is everything between the two: the same
// Director, rules, answers, header edits, cookies, retries, error pages
// and connection records as HTTP/1.1.
//
// # A request
//
// For each stream the handler builds an httpproxy.Request from the HTTP/2
// head (httpproxy.Request.Load writes it as an HTTP/1.1 head and parses it
// with the HTTP/1.1 parser, so the rules see exactly what they would see
// over HTTP/1.1, and a head HTTP/1.1 refuses is refused alike), asks the
// listener's Director for an endpoint (rules: route, deny, redirect,
// respond, header edits; the cluster's balancing, hashing, cookie and
// stick-table persistence, max_conn queues), then forwards the request:
//
//   - to an HTTP/2 endpoint as a stream of a pooled client connection
//     (many streams share one connection, up to what the endpoint allows);
//   - to an HTTP/1.1 endpoint over a pooled keep-alive connection of its
//     own (not the HTTP/1.1 engine's pool: the two engines frame
//     differently).
//
// Hop-by-hop fields are not forwarded either way (HTTP/2 has none but
// "te: trailers", which gRPC needs and which is kept for HTTP/2
// endpoints). The forwarding headers (X-Forwarded-For, -Proto, -Host and
// RFC 7239 Forwarded) are written by httpproxy.Request.ForwardHeader, the
// code that writes them for HTTP/1.1, and rule edits come after them, as in
// HTTP/1.1. Request and response trailers pass both ways, announced or not:
// gRPC's status travels in them. A response body is flushed to the client
// as it comes, so server streaming is not buffered.
//
// A connect that fails is retried on another pick (the listener's
// retries, around the failed endpoints), as HTTP/1.1 does; a request is
// sent again after it may have reached an endpoint only when it is
// idempotent, has no body and its pooled connection had gone stale. The
// proxy's own answers are those of HTTP/1.1 with their error pages: 503
// when no endpoint can take the request, 502 when connecting or the
// endpoint failed, 504 when the response head did not come within
// response_timeout (which also bounds every silence of the response body,
// so a gRPC stream that says nothing for that long is cut). A failure
// after the response started resets the stream (RST_STREAM), as does any
// failure once the listener's server is closed (the listener removed, or
// the node stopping), whose connections the node then closes.
//
// # Connections
//
// max_connection_age and max_requests_per_connection end an HTTP/2
// connection gracefully: GOAWAY, the streams open then complete, and the
// client opens a new connection for the next request. The response that
// reaches a limit asks for it; an idle connection that reaches its age gets
// its GOAWAY then. Server.Drain (node shutdown) sends GOAWAY on every
// connection. max_concurrent_streams bounds the streams a client may have
// open at once (SETTINGS_MAX_CONCURRENT_STREAMS, default 250).
//
// A listener whose rules may route to an http2 cluster has every client
// connection served here (httpproxy.Config.Translate), HTTP/1.1 ones too,
// so that an HTTP/1.1 client reaches an HTTP/2 endpoint (Envoy's protocol
// translation); their requests are framed as the HTTP/1.1 engine frames
// them before net/http reads them, and refused and answered as it refuses
// and answers them, a head not complete within request_header_timeout too
// (h1screen.go). Where net/http's own HTTP/1.x serving differs from that
// engine's, the connection makes up for it: a client that half-closes
// after its request still gets the answer (countConn.holdEOF, but with
// abort_on_close), an endpoint's early answer to an upload goes at
// once and ends the connection, which lingers, rather than wait for the
// rest of the body, and Expect: 100-continue is the endpoint's to answer
// (stream.go's outgoing). Such listeners trade the HTTP/1.1 engine's speed for it;
// other listeners hand only their HTTP/2 connections to this engine. Their
// HTTP/1.1 Upgrade requests (WebSocket) to HTTP/1.1 endpoints become
// tunnels as on any other listener, with the HTTP/1.1 engine's relay
// (upgrade.go).
//
// Each connection's record (conntrack) counts its streams as requests,
// the bytes read and written on it (after TLS, as HTTP/1.1 counts them),
// and the cluster and endpoint of its last stream.
// A request head refused on an HTTP/1.x connection before any handler saw
// it, by the screen (with the HTTP/1.1 engine's answer, the listener's
// limits too) or by net/http (a head the screen passed), ends the
// connection (as bad_request, client_timeout for a 408) and is counted as
// a failed request, metered and logged, as the HTTP/1.1 engine's own
// refusals are (countConn.refusal).
package h2proxy
