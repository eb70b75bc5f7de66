// Package web holds the browser pages readmarkd serves — the admin console
// and the demo chat — as a front-end project (Vite + TypeScript) whose
// build output, dist/, is committed and embedded here, so building the
// server needs no Node. scripts/build-web.sh rebuilds dist/.
package web

import "embed"

// Dist is the built pages: dist/console/, dist/demo/ and the shared
// dist/assets/.
//
//go:embed all:dist
var Dist embed.FS
