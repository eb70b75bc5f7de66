// Package webui serves the browser pages embedded in package web — the admin
// console at /console/ and the demo chat at /demo/ — and, when enabled, the
// development token endpoint the demo signs in with.
package webui

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/readmark/readmark/internal/admin"
	"github.com/readmark/readmark/internal/apierr"
	"github.com/readmark/readmark/internal/conv"
	"github.com/readmark/readmark/usersig"
	"github.com/readmark/readmark/web"
)

// DevTokenPath mints tokens for any user when dev tokens are enabled.
const DevTokenPath = "/v1/dev/token"

// DevTokenTTL is how long a development token is valid.
const DevTokenTTL = 24 * time.Hour

// Config wires the pages.
type Config struct {
	// DevTokenSecret, if set, enables POST DevTokenPath, which mints a
	// token signed with it for any valid user ID. Only for a server on
	// loopback (the server refuses otherwise).
	DevTokenSecret []byte
}

// Routes registers the pages (and the dev token endpoint if enabled).
func Routes(mux *http.ServeMux, cfg Config) {
	dist, err := fs.Sub(web.Dist, "dist")
	if err != nil {
		panic(err) // the embedded tree always has dist/
	}
	files := http.FileServerFS(dist)
	for _, p := range []string{"/console/", "/demo/", "/assets/"} {
		mux.Handle("GET "+p, files)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/demo/", http.StatusFound)
	})
	mux.HandleFunc("GET /v1/dev/config", func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, map[string]bool{"dev_tokens": cfg.DevTokenSecret != nil})
	})
	if cfg.DevTokenSecret == nil {
		return
	}
	mux.HandleFunc("POST "+DevTokenPath, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UserID string `json:"user_id"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			admin.WriteError(w, apierr.InvalidArgument("request JSON: %v", err))
			return
		}
		if err := conv.CheckID("user_id", req.UserID); err != nil {
			admin.WriteError(w, err)
			return
		}
		tok, err := usersig.Gen(cfg.DevTokenSecret, req.UserID, DevTokenTTL)
		if err != nil {
			admin.WriteError(w, err)
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"user_id": req.UserID, "token": tok})
	})
}
