package health

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testcert"
)

// h2OnlyHandler answers 200 to an HTTP/2 GET of /healthz?deep=1 that came
// with the check's Host and User-Agent, 418 to anything else, naming
// what was wrong in a header for the test to print.
func h2OnlyHandler(w http.ResponseWriter, r *http.Request) {
	got := fmt.Sprintf("%s %s %s %s %s", r.Proto, r.Method, r.RequestURI, r.Host, r.UserAgent())
	if got != "HTTP/2.0 GET /healthz?deep=1 svc.example sluice-health" {
		w.Header().Set("X-Got", got)
		w.WriteHeader(http.StatusTeapot)
	}
}

// startH2COnly is a server that speaks h2c with prior knowledge and no
// HTTP/1.1.
func startH2COnly(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(h2OnlyHandler), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestH2Checks: with Spec.HTTP2, an HTTP check speaks HTTP/2 (h2c with
// prior knowledge in clear, h2 in ALPN over TLS) and passes against
// servers that speak nothing else, which the HTTP/1.1 check fails; the
// request is the configured one; statuses outside Expect, and endpoints
// that do not speak HTTP/2, fail with the reason.
func TestH2Checks(t *testing.T) {
	ca := testcert.NewCA(t)
	h2c := startH2COnly(t)

	// h2 over TLS, nothing else in ALPN: an HTTP/1.1 client fails the
	// handshake.
	h2tls := httptest.NewUnstartedServer(http.HandlerFunc(h2OnlyHandler))
	h2tls.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}, NextProtos: []string{"h2"}}
	var p http.Protocols
	p.SetHTTP2(true)
	h2tls.Config.Protocols = &p
	h2tls.Config.ErrorLog = log.New(io.Discard, "", 0)
	h2tls.StartTLS()
	t.Cleanup(h2tls.Close)
	h2tlsAddr := h2tls.Listener.Addr().String()

	h1 := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(h1.Close)
	h1.Config.ErrorLog = log.New(io.Discard, "", 0)
	h1Addr := h1.Listener.Addr().String()
	h1tls := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	h1tls.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}}
	h1tls.Config.ErrorLog = log.New(io.Discard, "", 0)
	h1tls.StartTLS() // ALPN: http/1.1 only
	t.Cleanup(h1tls.Close)
	h1tlsAddr := h1tls.Listener.Addr().String()

	tlsCfg := &tls.Config{RootCAs: ca.Pool()}
	for _, tt := range []struct {
		name  string
		addr  string
		http2 bool
		tls   *tls.Config
		path  string
		want  string // "" passes; else in the reason
	}{
		{"h2c", h2c, true, nil, "/healthz?deep=1", ""},
		{"h2c, status outside expect", h2c, true, nil, "/other", "status 418"},
		{"h2c server, HTTP/1.1 check", h2c, false, nil, "/healthz?deep=1", "connection reset"},
		{"h2 over TLS", h2tlsAddr, true, tlsCfg, "/healthz?deep=1", ""},
		{"h2-only TLS server, HTTP/1.1 check", h2tlsAddr, false, tlsCfg, "/healthz?deep=1", "connection closed before the status line"},
		{"h2 over TLS, unknown authority", h2tlsAddr, true, &tls.Config{RootCAs: testcert.NewCA(t).Pool()}, "/healthz?deep=1", "TLS: x509: certificate signed by unknown authority"},
		{"HTTP/1.1-only server, h2c check", h1Addr, true, nil, "/healthz?deep=1", "HTTP/2: "},
		{"HTTP/1.1-only TLS server, h2 check", h1tlsAddr, true, tlsCfg, "/healthz?deep=1", "no application protocol"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{Key: "c/e@" + tt.addr, Addr: tt.addr, Interval: time.Second, Timeout: 5 * time.Second,
				HTTPPath: tt.path, HTTPHost: "svc.example", HTTP2: tt.http2, TLS: tt.tls}
			err := newProber(s.withDefaults(), addrOf(s)).check(t.Context())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("check failed: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("check said %v, want %q in the reason", err, tt.want)
			}
		})
	}
}

// TestH2CheckNeedsALPN: a TLS endpoint that does no ALPN (so does not
// choose h2) fails an HTTP/2 check with that reason.
func TestH2CheckNeedsALPN(t *testing.T) {
	ca := testcert.NewCA(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s := Spec{Addr: ln.Addr().String(), Interval: time.Second, Timeout: 5 * time.Second, HTTPPath: "/", HTTP2: true, TLS: &tls.Config{RootCAs: ca.Pool()}}
	if err := newProber(s.withDefaults(), addrOf(s)).check(t.Context()); err != errNoH2 {
		t.Errorf("check said %v, want %v", err, errNoH2)
	}
}
