package auth

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/internal/logfile"
)

// Entry is one line of the audit log: one attempt to change something (or
// to read secrets), allowed or not.
type Entry struct {
	Time time.Time `json:"time"`
	// Identity is the token's name, or "anonymous" (no token key, or a
	// token that could not be read). Role is the token's role, if any.
	Identity string `json:"identity"`
	Role     string `json:"role,omitempty"`
	// TokenID is the id of the caller's token, which tells it from
	// others of its name.
	TokenID string `json:"token_id,omitempty"`
	// Node is set when the caller presented a node certificate.
	Node   string `json:"node,omitempty"`
	Peer   string `json:"peer,omitempty"`
	Method string `json:"method"`
	// Target is what the call acts on: "web/web1", "version 3", "token ci".
	Target string `json:"target,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// Version is the version the call made or left current, when it says.
	Version uint64 `json:"version,omitempty"`
	// NewTokenID and NewTokenExpires are those of the token a CreateToken
	// made.
	NewTokenID      string    `json:"new_token_id,omitempty"`
	NewTokenExpires time.Time `json:"new_token_expires,omitzero"`
	// ClaimedAuthor is the author the client sent, when it was replaced by
	// the token's name.
	ClaimedAuthor string `json:"claimed_author,omitempty"`
	// Outcome is "ok", or the gRPC code's name (PermissionDenied), with
	// Error saying why.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// Audit writes entries as JSON lines. Its methods may be called from any
// goroutine.
type Audit struct {
	mu   sync.Mutex
	w    io.Writer
	file *logfile.File // nil: not a file of its own
	log  *slog.Logger
}

// OpenAudit opens path for appending (created 0600), or stdout for "-".
// An existing file that group or others may read is logged as such: the
// log names the operators and what they changed.
func OpenAudit(path string, log *slog.Logger) (*Audit, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "-" {
		return &Audit{w: os.Stdout, log: log}, nil
	}
	f, err := logfile.Open(path, 0o600)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("the audit log may be read by others than its owner; chmod 600 it", "path", path, "mode", st.Mode().Perm().String())
	}
	return &Audit{w: f, file: f, log: log}, nil
}

// File is the file the audit log appends to, for reopening after log
// rotation; nil when it writes to stdout or a writer of the caller's.
func (a *Audit) File() *logfile.File {
	if a == nil {
		return nil
	}
	return a.file
}

// NewAudit writes to w.
func NewAudit(w io.Writer, log *slog.Logger) *Audit {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Audit{w: w, log: log}
}

// Write appends e as one line. A write that fails is logged; the call it
// describes is not failed for it.
func (a *Audit) Write(e Entry) {
	if a == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		a.log.Error("audit: cannot encode entry", "err", err)
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.w.Write(b); err != nil {
		a.log.Error("audit: cannot write", "err", err, "entry", string(b))
	}
}

// Close closes the file.
func (a *Audit) Close() error {
	if a == nil || a.file == nil {
		return nil
	}
	return a.file.Close()
}
