package controlplane

import (
	"crypto/x509"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestCertificateNote: what the control plane logs of its certificate:
// when it expires, a warning within 30 days, an error once it expired.
func TestCertificateNote(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		left  time.Duration
		level slog.Level
		msg   string
	}{
		{365 * 24 * time.Hour, slog.LevelInfo, "the control plane's TLS certificate (--tls-cert) expires in 365 days"},
		{30*24*time.Hour + time.Minute, slog.LevelInfo, "expires in 30 days"},
		{12 * 24 * time.Hour, slog.LevelWarn, "expires in 12 days: nodes and sluicectl will refuse to connect to it then; renew it with 'sluice-cp issue-server-cert --dir DIR'"},
		{30 * time.Hour, slog.LevelWarn, "expires in 30 hours"},
		{time.Minute, slog.LevelWarn, "expires in less than an hour"},
		{0, slog.LevelError, "has expired: nodes and sluicectl refuse to connect to it; renew it with"},
	} {
		level, msg := certificateNote(&x509.Certificate{NotAfter: now.Add(tc.left)}, now)
		if level != tc.level || !strings.Contains(msg, tc.msg) {
			t.Errorf("%v left: %v %q; want %v and %q", tc.left, level, msg, tc.level, tc.msg)
		}
	}
}
