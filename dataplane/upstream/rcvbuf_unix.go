//go:build unix

package upstream

import (
	"os"
	"syscall"
)

func setReceiveBuffer(fd uintptr, n int) error {
	return os.NewSyscallError("setsockopt SO_RCVBUF", syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n))
}
