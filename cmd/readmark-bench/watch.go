package main

import (
	"slices"
	"sync"
	"time"

	"github.com/readmark/readmark/im"
)

// pushWatcher is a sender's listener: it feeds the receipt pushes to the
// tracker and notes when each watched message reaches its final ReadCount.
type pushWatcher struct {
	im.BaseAdvancedMsgListener
	tr *tracker

	mu        sync.Mutex
	frameAt   []time.Duration   // when each push frame (OnRecvMessageReadReceipts call) arrived
	want      map[string]uint64 // watched message -> final ReadCount
	remaining int
	lastFinal time.Duration // when the last watched message reached its final count
}

func newPushWatcher(tr *tracker) *pushWatcher {
	return &pushWatcher{tr: tr, want: make(map[string]uint64)}
}

// watch starts watching msgID until its pushed ReadCount reaches final.
func (w *pushWatcher) watch(msgID string, final uint64) {
	w.mu.Lock()
	if _, ok := w.want[msgID]; !ok {
		w.remaining++
	}
	w.want[msgID] = final
	if w.tr.maxCount(msgID) >= final { // pushed before it was watched
		w.want[msgID] = 0
		w.remaining--
		if w.remaining == 0 {
			w.lastFinal = time.Since(w.tr.start)
		}
	}
	w.mu.Unlock()
}

func (w *pushWatcher) OnRecvMessageReadReceipts(rs []*im.MessageReceipt) {
	w.mu.Lock()
	w.frameAt = append(w.frameAt, time.Since(w.tr.start))
	w.mu.Unlock()
	for _, r := range rs {
		if r.GroupID == "" {
			continue
		}
		hi := w.tr.pushed(r.MsgID, r.ReadCount)
		w.mu.Lock()
		if final, ok := w.want[r.MsgID]; ok && final > 0 && hi >= final {
			w.want[r.MsgID] = 0 // reached
			w.remaining--
			if w.remaining == 0 {
				w.lastFinal = time.Since(w.tr.start)
			}
		}
		w.mu.Unlock()
	}
}

// pending returns how many watched messages have not reached their final
// count, and when the last one did (if pending is 0).
func (w *pushWatcher) pending() (int, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.remaining, w.lastFinal
}

// frameStats returns the number of push frames received and the most of
// them within any one second (a sliding window, both ends included).
func (w *pushWatcher) frameStats() (n, maxPerSec int) {
	w.mu.Lock()
	at := slices.Clone(w.frameAt)
	w.mu.Unlock()
	slices.Sort(at)
	lo := 0
	for hi, t := range at {
		for t-at[lo] > time.Second {
			lo++
		}
		maxPerSec = max(maxPerSec, hi-lo+1)
	}
	return len(at), maxPerSec
}
