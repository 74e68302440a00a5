package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"

	"google.golang.org/grpc/credentials"
)

// handshakeLog is the server's TLS credentials, logging every handshake
// that fails with who tried and why, in words an operator can act on.
type handshakeLog struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (h *handshakeLog) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	peer := conn.RemoteAddr().String()
	out, info, err := h.TransportCredentials.ServerHandshake(conn)
	if err != nil && !errors.Is(err, io.EOF) {
		var unknown x509.UnknownAuthorityError
		var verify *tls.CertificateVerificationError
		switch {
		case errors.As(err, &unknown):
			subject := ""
			if unknown.Cert != nil {
				subject = unknown.Cert.Subject.String()
			}
			h.log.Warn("TLS handshake refused: client certificate not signed by the control plane's CA",
				"peer", peer, "subject", subject, "err", err)
		case errors.As(err, &verify):
			h.log.Warn("TLS handshake refused: client certificate does not verify", "peer", peer, "err", err)
		case strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
			h.log.Warn("TLS handshake refused: the client speaks plain gRPC, not TLS (give it the CA: --ca)", "peer", peer)
		default:
			h.log.Warn("TLS handshake failed", "peer", peer, "err", err)
		}
	}
	return out, info, err
}

func (h *handshakeLog) Clone() credentials.TransportCredentials {
	return &handshakeLog{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}
