//go:build !linux

package httpproxy

import (
	"errors"
	"time"
)

// Parking needs epoll; elsewhere an idle connection keeps its goroutine.

func parkingWorks() bool { return false }

type parker struct{}

var idlePark parker

var errParkTaken = errors.New("httpproxy: parked connection taken")

func (parker) add(*clientConn, uint32, time.Time, bool) error {
	return errors.New("httpproxy: no parking on this platform")
}

func (parker) remove(*clientConn) {}

func parkedCount() int { return 0 }
