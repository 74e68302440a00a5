//go:build !linux

package upstream

import "syscall"

// roomToSend cannot tell on this platform: the TLS close_notify is always
// sent (see room_linux.go).
func roomToSend(syscall.Conn) bool { return true }
