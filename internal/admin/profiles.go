package admin

import (
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync"

	"github.com/readmark/readmark/internal/apierr"
)

// profileRoutes serves Go's profiles (net/http/pprof) behind the admin
// token: they show the server's code and data, and a CPU profile or trace
// costs CPU while it runs. The index serves the named profiles (heap,
// allocs, goroutine, block, mutex, threadcreate; ?seconds=N for a delta).
// Block and mutex events are not recorded by default (it costs on every
// contended lock); ?rate=N with ?seconds=N on /debug/pprof/block or
// /debug/pprof/mutex records them for those seconds only.
func (a *API) profileRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", a.Authed(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", a.Authed(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", a.Authed(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", a.Authed(pprof.Symbol))
	mux.HandleFunc("POST /debug/pprof/symbol", a.Authed(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", a.Authed(pprof.Trace))
	mux.HandleFunc("GET /debug/pprof/block", a.Authed(sampled("block", func(r int) { runtime.SetBlockProfileRate(r) })))
	mux.HandleFunc("GET /debug/pprof/mutex", a.Authed(sampled("mutex", func(r int) { runtime.SetMutexProfileFraction(r) })))
}

// sampling serializes the requests that change a sampling rate, so one
// cannot turn recording off under another.
var sampling sync.Mutex

// sampled serves the named profile; with ?rate=N (and ?seconds=N, the
// window the delta profile covers) it records at rate N during the window
// and turns recording off again after it. For block, N is the nanoseconds
// blocked per sampled event (1: every event); for mutex, 1/N of the
// contention events are sampled.
func sampled(name string, setRate func(int)) http.HandlerFunc {
	h := pprof.Handler(name)
	return func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.Query().Get("rate")
		if raw == "" {
			h.ServeHTTP(w, r)
			return
		}
		rate, err := strconv.Atoi(raw)
		if err != nil || rate < 1 {
			WriteError(w, apierr.InvalidArgument("rate must be a positive integer"))
			return
		}
		if s, err := strconv.Atoi(r.URL.Query().Get("seconds")); err != nil || s < 1 {
			WriteError(w, apierr.InvalidArgument("rate needs seconds=N: events are recorded only during the profile's window"))
			return
		}
		sampling.Lock()
		defer sampling.Unlock()
		setRate(rate)
		defer setRate(0)
		h.ServeHTTP(w, r)
	}
}
