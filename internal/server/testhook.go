package server

import (
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/readmark/readmark/internal/storage"
)

// holdCommitEnv is for the fencing test only (test/multinode,
// TestPausedNodeIsFenced): it names a file, and while that file holds a
// partition number, a group commit writing that partition is held after
// its lease epochs were read and before it is applied, so that the test can
// pause the node with a commit in exactly that window. Unset (always, in
// production), nothing is installed.
const holdCommitEnv = "READMARK_TEST_HOLD_COMMIT"

// holdCommits wraps the Committer's Fences hook with the hold of
// holdCommitEnv, if set.
func holdCommits(fences func([]uint32) ([]storage.Fence, error), log *slog.Logger) func([]uint32) ([]storage.Fence, error) {
	path := os.Getenv(holdCommitEnv)
	if path == "" {
		return fences
	}
	return func(parts []uint32) ([]storage.Fence, error) {
		fs, err := fences(parts)
		for held := false; err == nil && holding(path, parts); held = true {
			if !held {
				log.Warn("test hook: holding a commit", "partitions", parts)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return fs, err
	}
}

// holding reports whether the file at path names one of parts.
func holding(path string, parts []uint32) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	p, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	return err == nil && slices.Contains(parts, uint32(p))
}
