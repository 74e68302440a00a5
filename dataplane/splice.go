package dataplane

import "github.com/sluice-lb/sluice/dataplane/internal/splice"

// SetSplice sets, for the whole process, which large transfers (HTTP
// bodies from 64 KiB, TCP bursts) go through splice(2) rather than the
// proxies' buffers, by the name sluice-dp's --splice takes: "auto", the
// default (from peers on other hosts; those of peers on this host are
// copied, which costs less), "always" or "never". Off Linux transfers are
// copied whatever it says.
func SetSplice(mode string) error {
	m, err := splice.ParseMode(mode)
	if err != nil {
		return err
	}
	splice.SetMode(m)
	return nil
}
