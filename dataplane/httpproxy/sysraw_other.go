//go:build unix && !linux

package httpproxy

import "syscall"

// recvRaw and sendRaw are recvfrom(2) and sendmsg(2) through the syscall
// package; Linux makes them raw system calls (sysraw_linux.go).
func recvRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), p, 0)
	return n, errno(err)
}

func sendRaw(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.SendmsgN(int(fd), p, nil, nil, 0)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}
