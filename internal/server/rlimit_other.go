//go:build !unix

package server

// maxDescriptors is a fixed bound where there is no RLIMIT_NOFILE.
func maxDescriptors() int { return 1 << 14 }
