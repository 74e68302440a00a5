package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// CookieValue is the value of the persistence cookie that names endpoint
// name of cluster: explicit when the snapshot gives one, else 16 hex digits
// of a SHA-256 of the two names. It is the same on every node, survives a
// change of the endpoint's address, and says nothing about that address.
func CookieValue(cluster, name, explicit string) string {
	if explicit != "" {
		return explicit
	}
	sum := sha256.Sum256([]byte(cluster + "/" + name))
	return hex.EncodeToString(sum[:8])
}

// SetCookie is the value of the Set-Cookie field that gives a client the
// cookie of c with value v, attributes in the order browsers show them:
//
//	SERVERID=1f0c9a7e4b2d6c13; Path=/; Max-Age=3600; HttpOnly; Secure
func SetCookie(c *sluicev1.CookiePersistence, v string) []byte {
	b := make([]byte, 0, 96)
	b = append(b, c.GetName()...)
	b = append(b, '=')
	b = append(b, v...)
	path := c.GetPath()
	if path == "" {
		path = "/"
	}
	b = append(b, "; Path="...)
	b = append(b, path...)
	if d := c.GetDomain(); d != "" {
		b = append(b, "; Domain="...)
		b = append(b, d...)
	}
	if c.MaxAge != nil {
		b = append(b, "; Max-Age="...)
		b = strconv.AppendInt(b, int64(c.GetMaxAge().AsDuration().Seconds()), 10)
	}
	if c.GetHttponly() {
		b = append(b, "; HttpOnly"...)
	}
	if c.GetSecure() {
		b = append(b, "; Secure"...)
	}
	switch c.GetSameSite() {
	case sluicev1.SameSite_SAME_SITE_LAX:
		b = append(b, "; SameSite=Lax"...)
	case sluicev1.SameSite_SAME_SITE_STRICT:
		b = append(b, "; SameSite=Strict"...)
	case sluicev1.SameSite_SAME_SITE_NONE:
		b = append(b, "; SameSite=None"...)
	}
	return b
}
