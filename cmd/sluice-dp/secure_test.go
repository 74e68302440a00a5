package main

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogValidity: the node names an expired, a not yet valid and a soon
// expiring certificate at start, and says nothing of a good one.
func TestLogValidity(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tt := range []struct {
		name       string
		from, till time.Time
		want       string
	}{
		{"expired", now.Add(-30 * day), now.Add(-day), `level=ERROR msg="--cert has expired: the control plane will refuse this node; issue a new certificate with 'sluicectl cert issue'" cert=node.crt expired=2026-11-21T12:00:00Z`},
		{"not yet valid", now.Add(day), now.Add(30 * day), `level=ERROR msg="--cert is not valid yet: the control plane will refuse this node until then; is this machine's clock right?" cert=node.crt valid_from=2026-11-23T12:00:00Z`},
		{"expires in 2 days", now.Add(-day), now.Add(2 * day), `level=WARN msg="--cert expires soon; issue a new certificate with 'sluicectl cert issue'" cert=node.crt expires=2026-11-24T12:00:00Z`},
		{"good for a year", now.Add(-day), now.Add(365 * day), ``},
	} {
		var out bytes.Buffer
		log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		logValidity(log, "node.crt", &x509.Certificate{NotBefore: tt.from, NotAfter: tt.till}, now)
		if got := strings.TrimSpace(out.String()); got != tt.want {
			t.Errorf("%s: logged\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
}
