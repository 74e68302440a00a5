package controlplane

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-lb/sluice/internal/pki"
)

// CertificateWarning is how long before the control plane's TLS
// certificate expires it starts to warn, once every certificateCheck.
// A node or sluicectl refuses an expired certificate, so the fleet's
// reconnects fail from then on.
const CertificateWarning = 30 * 24 * time.Hour

const certificateCheck = time.Hour

// watchCertificate renews the certificate the control plane serves when
// it is due and the CA's key is at hand (auth.Guard.RenewServing), and
// logs what certificateNote says of it, at the start and every
// certificateCheck, or sooner when a renewal falls due sooner (a
// certificate good for less than a few hours), until ctx ends. The
// certificate is the one last read from --tls-cert: one renewed
// meanwhile, here or by sluice-cp issue-server-cert, is the one checked.
func (s *Server) watchCertificate(ctx context.Context) {
	t := time.NewTimer(certificateCheck)
	defer t.Stop()
	sec := s.opts.Security
	for first := true; ; first = false {
		now := time.Now()
		if notAfter, err := sec.RenewServing(now); err != nil {
			s.log.Error("could not renew the control plane's TLS certificate (--tls-cert) with its CA (--ca-key); trying again in an hour", "err", err)
		} else if !notAfter.IsZero() {
			s.log.Info("renewed the control plane's TLS certificate (--tls-cert) with its CA (--ca-key): new TLS connections get it",
				"not_after", notAfter.UTC().Format(time.RFC3339))
		}
		wait := certificateCheck
		if cert := sec.ServingCertificate(); cert != nil {
			renewing := sec.RenewsServing()
			level, msg := certificateNote(cert, now, renewing)
			if level > slog.LevelInfo || first {
				s.log.Log(ctx, level, msg, "not_after", cert.NotAfter.UTC().Format(time.RFC3339))
			}
			if due := pki.RenewalTime(cert).Sub(now); renewing && due > 0 {
				wait = min(wait, due+time.Second/10)
			}
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// certificateNote is what to log of the control plane's certificate cert
// at now: an error once it expired, a warning within CertificateWarning
// of it, and otherwise when it expires. One the control plane renews
// itself (renewing) gets the warning only once its renewal is overdue:
// it failed.
func certificateNote(cert *x509.Certificate, now time.Time, renewing bool) (slog.Level, string) {
	const renew = "renew it with 'sluice-cp issue-server-cert --dir DIR' (served from the next TLS handshake, no restart)"
	left := cert.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return slog.LevelError, "the control plane's TLS certificate (--tls-cert) has expired: nodes and sluicectl refuse to connect to it; " + renew
	case left < CertificateWarning && (!renewing || !now.Before(pki.RenewalTime(cert))):
		return slog.LevelWarn, fmt.Sprintf("the control plane's TLS certificate (--tls-cert) expires in %s: nodes and sluicectl will refuse to connect to it then; %s", days(left), renew)
	}
	if renewing {
		return slog.LevelInfo, fmt.Sprintf("the control plane's TLS certificate (--tls-cert) expires in %s, and is renewed with the CA (--ca-key) %s before", days(left), days(pki.Validity(cert)/3))
	}
	return slog.LevelInfo, fmt.Sprintf("the control plane's TLS certificate (--tls-cert) expires in %s", days(left))
}

// days says d in whole days, or in hours under two days.
func days(d time.Duration) string {
	if d < time.Hour {
		return "less than an hour"
	}
	if d < 48*time.Hour {
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// revokedCheck is how often a replica looks for a new published version
// to take the revoked node certificates from.
const revokedCheck = 250 * time.Millisecond

// watchRevoked has the Guard refuse the node certificates the version
// this replica publishes revokes (sluicectl cert revoke), from each new
// version on, until ctx ends; the Guard ends the streams open on them.
func (s *Server) watchRevoked(ctx context.Context) {
	t := time.NewTicker(revokedCheck)
	defer t.Stop()
	var seen uint64
	var set bool
	for {
		if v, cfg := s.discovery.Config(); cfg != nil && (!set || v != seen) {
			seen, set = v, true
			s.opts.Security.SetRevoked(cfg.GetRevokedNodes())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
