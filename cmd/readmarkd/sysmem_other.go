//go:build !linux

package main

// Elsewhere the memory size is not read: --memory-limit auto sets none.
func physicalMemory() uint64    { return 0 }
func cgroupMemoryLimit() uint64 { return 0 }
