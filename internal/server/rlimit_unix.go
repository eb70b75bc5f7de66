//go:build unix

package server

import "syscall"

// maxDescriptors is the process's soft RLIMIT_NOFILE.
func maxDescriptors() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<24 {
		return 1 << 16 // unknown or unlimited: a generous fixed bound
	}
	return int(r.Cur)
}
