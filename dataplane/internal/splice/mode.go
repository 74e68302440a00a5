package splice

import (
	"fmt"
	"sync/atomic"
)

// Mode says which large transfers a node splices (sluice-dp --splice); it
// is the process's, set once at start (SetMode). Splicing is Linux's
// only: elsewhere the mode has no effect.
type Mode int32

const (
	// Auto splices the bytes of peers on other hosts, and copies those of
	// peers on this one (Pays says why).
	Auto Mode = iota
	// Always splices every large transfer, as the node did before Auto.
	Always
	// Never copies every transfer through user space.
	Never
)

var mode atomic.Int32

// SetMode sets the process's Mode.
func SetMode(m Mode) { mode.Store(int32(m)) }

// ParseMode reads a Mode by its name: auto, always or never.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto":
		return Auto, nil
	case "always":
		return Always, nil
	case "never":
		return Never, nil
	}
	return Auto, fmt.Errorf("%q is not auto, always or never", s)
}
