//go:build race

package pebblestore_test

// raceEnabled: sync.Pool (Pebble pools its iterators) drops some of what
// it is given under the race detector, so allocation counts are not
// checked.
const raceEnabled = true
