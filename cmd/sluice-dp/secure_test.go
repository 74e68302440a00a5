package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogValidity: the node names an expired, a not yet valid and, when
// it does not renew it itself, a soon expiring certificate at start, and
// says nothing of a good one.
func TestLogValidity(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tt := range []struct {
		name       string
		from, till time.Time
		renewing   bool
		want       string
	}{
		{"expired", now.Add(-30 * day), now.Add(-day), true, `level=ERROR msg="--cert has expired: the control plane will refuse this node; issue a new certificate with 'sluicectl cert issue'" cert=node.crt expired=2026-11-21T12:00:00Z`},
		{"not yet valid", now.Add(day), now.Add(30 * day), true, `level=ERROR msg="--cert is not valid yet: the control plane will refuse this node until then; is this machine's clock right?" cert=node.crt valid_from=2026-11-23T12:00:00Z`},
		{"expires in 2 days", now.Add(-day), now.Add(2 * day), false, `level=WARN msg="--cert expires soon; issue a new certificate with 'sluicectl cert issue'" cert=node.crt expires=2026-11-24T12:00:00Z`},
		{"expires in 2 days, renewed by the node", now.Add(-day), now.Add(2 * day), true, ``},
		{"good for a year", now.Add(-day), now.Add(365 * day), false, ``},
	} {
		var out bytes.Buffer
		log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		logValidity(log, "node.crt", &x509.Certificate{NotBefore: tt.from, NotAfter: tt.till}, now, tt.renewing)
		if got := strings.TrimSpace(out.String()); got != tt.want {
			t.Errorf("%s: logged\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}

// TestWatchValidity: a certificate that expired while the node ran is
// named at each handshake that sends it, where the node would otherwise
// see only its connection fail; a valid one is sent without a word.
func TestWatchValidity(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	leaf := &x509.Certificate{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	cfg := &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{Leaf: leaf}, nil
	}}
	watchValidity(log, "node.crt", cfg)
	if c, err := cfg.GetClientCertificate(nil); err != nil || c.Leaf != leaf {
		t.Fatalf("GetClientCertificate = %v, %v; want the certificate loaded", c, err)
	}
	if out.Len() != 0 {
		t.Errorf("a valid certificate logged %q", out.String())
	}
	leaf = &x509.Certificate{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Minute)}
	for range 2 {
		cfg.GetClientCertificate(nil)
	}
	if got := strings.Count(out.String(), `msg="--cert has expired: the control plane will refuse this node;`); got != 2 {
		t.Errorf("two handshakes with an expired certificate logged:\n%s\nwant the expiry named at each", out.String())
	}
}
