package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Credentials are the users allowed on the admin address, as HAProxy's
// "stats auth user:password" lines. They are read from a file rather than
// given as flags so that no password shows in ps or in shell history.
type Credentials struct {
	users []credential
}

// credential keeps digests, not the text: comparing two SHA-256 sums in
// constant time says nothing of the password's length.
type credential struct {
	user, pass [sha256.Size]byte
}

// LoadCredentials reads a credentials file (see ParseCredentials). It
// refuses a file that group or others may read or write: one password
// file readable by every local user would protect nothing.
func LoadCredentials(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %#o: group or others may read it; chmod 600 it", path, perm)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, err
	}
	c, err := ParseCredentials(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseCredentials reads one "user:password" per line. The password is
// everything after the first colon, spaces included; blank lines and lines
// starting with # are skipped; a file may end its lines with CRLF. A user
// may appear once, and at least one is needed.
func ParseCredentials(data []byte) (*Credentials, error) {
	c := &Credentials{}
	seen := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want user:password, found no colon", i+1)
		case user == "" || strings.TrimSpace(user) != user:
			return nil, fmt.Errorf("line %d: the user name is empty or starts or ends with a space", i+1)
		case pass == "":
			return nil, fmt.Errorf("line %d: user %q has an empty password", i+1, user)
		case seen[user]:
			return nil, fmt.Errorf("line %d: user %q appears twice", i+1, user)
		}
		seen[user] = true
		c.users = append(c.users, credential{sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))})
	}
	if len(c.users) == 0 {
		return nil, errors.New("no user:password line")
	}
	return c, nil
}

// Allow reports whether user and pass match one line. It looks at every
// line whatever the answer, so its time does not tell which users exist.
func (c *Credentials) Allow(user, pass string) bool {
	u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	ok := 0
	for _, cr := range c.users {
		ok |= subtle.ConstantTimeCompare(u[:], cr.user[:]) & subtle.ConstantTimeCompare(p[:], cr.pass[:])
	}
	return ok == 1
}

// Protect answers 401 with a Basic challenge to any request without
// allowed credentials, except the probes /healthz and /readyz: a
// kubelet or a load balancer in front must not need the password.
func (c *Credentials) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			h.ServeHTTP(w, r)
			return
		}
		if user, pass, ok := r.BasicAuth(); ok && c.Allow(user, pass) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="sluice"`)
		http.Error(w, "401 unauthorized: this node's admin address needs a user and password (sluice-dp --admin-auth-file)", http.StatusUnauthorized)
	})
}
