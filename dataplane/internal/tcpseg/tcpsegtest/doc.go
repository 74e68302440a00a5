// Package tcpsegtest has the sockets of tests announce the largest TCP
// segment they take, for tests of what copies read (package tcpseg).
package tcpsegtest
