//go:build race

package gateway

// raceEnabled: sync.Pool drops some of what it is given under the race
// detector, so allocation counts are not checked.
const raceEnabled = true
