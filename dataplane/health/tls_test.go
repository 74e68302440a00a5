package health

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testcert"
)

// TestTLSChecks: against an HTTPS endpoint, a TCP check passes once the
// handshake verified the certificate, and an HTTP check speaks HTTPS; a
// certificate of another authority or for another name fails both, with
// the verification error as the reason.
func TestTLSChecks(t *testing.T) {
	ca := testcert.NewCA(t)
	start := func(cert tls.Certificate) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" || r.TLS == nil {
				w.WriteHeader(http.StatusNotFound)
			}
			io.WriteString(w, "ok")
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	good := start(ca.Server(t, "127.0.0.1"))
	otherCA := start(testcert.NewCA(t).Server(t, "127.0.0.1"))
	otherName := start(ca.Server(t, "a.example"))
	cfg := &tls.Config{RootCAs: ca.Pool()}
	old := func() string {
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}, MaxVersion: tls.VersionTLS12}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}()

	for _, tt := range []struct {
		name, addr, path string
		want             string // "" passes; else in the reason
		min              uint16 // the check's oldest TLS version; 0: the default
	}{
		{"TCP", good, "", "", 0},
		{"HTTPS", good, "/healthz", "", 0},
		{"TCP, unknown authority", otherCA, "", "TLS: x509: certificate signed by unknown authority", 0},
		{"HTTPS, unknown authority", otherCA, "/healthz", "TLS: x509: certificate signed by unknown authority", 0},
		{"TCP, other name", otherName, "", "TLS: x509: cannot validate certificate for 127.0.0.1", 0},
		{"TLS 1.3 to an endpoint of TLS 1.2", old, "", "TLS: protocol version not supported", tls.VersionTLS13},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cfg.Clone()
			cfg.MinVersion = tt.min
			s := Spec{Key: "c/e@" + tt.addr, Addr: tt.addr, Interval: time.Second, Timeout: 5 * time.Second, HTTPPath: tt.path, TLS: cfg}
			err := newProber(s.withDefaults(), addrOf(s)).check(t.Context())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("check failed: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("check said %v, want %q", err, tt.want)
			}
		})
	}

	// A TLS check of a plain server fails its handshake.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	s := Spec{Addr: plain.Listener.Addr().String(), Interval: time.Second, Timeout: 5 * time.Second, TLS: cfg}
	if err := newProber(s.withDefaults(), addrOf(s)).check(t.Context()); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("TLS check of a plain server said %v, want a TLS handshake failure", err)
	}
}
