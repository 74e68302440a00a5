package controlplane

import (
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/pki"
)

// TestCertificateNote: what the control plane logs of its certificate:
// when it expires, a warning within 30 days, an error once it expired;
// of one it renews itself, the warning only once the renewal is overdue.
func TestCertificateNote(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		valid, left time.Duration
		renewing    bool
		level       slog.Level
		msg         string
	}{
		{365 * day, 365 * day, false, slog.LevelInfo, "the control plane's TLS certificate (--tls-cert) expires in 365 days"},
		{365 * day, 30*day + time.Minute, false, slog.LevelInfo, "expires in 30 days"},
		{365 * day, 12 * day, false, slog.LevelWarn, "expires in 12 days: nodes and sluicectl will refuse to connect to it then; renew it with 'sluice-cp issue-server-cert --dir DIR'"},
		{365 * day, 30 * time.Hour, false, slog.LevelWarn, "expires in 30 hours"},
		{365 * day, time.Minute, false, slog.LevelWarn, "expires in less than an hour"},
		{365 * day, 0, false, slog.LevelError, "has expired: nodes and sluicectl refuse to connect to it; renew it with"},
		{365 * day, 200 * day, true, slog.LevelInfo, "the control plane's TLS certificate (--tls-cert) expires in 200 days, and is renewed with the CA (--ca-key) 121 days before"},
		{21 * day, 12 * day, true, slog.LevelInfo, "expires in 12 days, and is renewed with the CA (--ca-key) 7 days before"},
		{365 * day, 12 * day, true, slog.LevelWarn, "expires in 12 days: nodes and sluicectl will refuse"},
		{365 * day, 0, true, slog.LevelError, "has expired"},
	} {
		end := now.Add(tc.left)
		cert := &x509.Certificate{NotBefore: end.Add(-tc.valid - pki.Backdate), NotAfter: end}
		level, msg := certificateNote(cert, now, tc.renewing)
		if level != tc.level || !strings.Contains(msg, tc.msg) {
			t.Errorf("%v of %v left, renewing %v: %v %q; want %v and %q", tc.left, tc.valid, tc.renewing, level, msg, tc.level, tc.msg)
		}
	}
}
