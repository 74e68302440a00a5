// Package dashboard serves the control plane's web dashboard: one page of
// plain HTML, CSS and JavaScript embedded in the binary (no CDN, no build
// step), which polls the JSON API of package httpapi every 1.5 s and
// draws its charts as SVG itself.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var files embed.FS

// Handler serves the dashboard at / and its assets beside it, to GET and
// HEAD only (mount it on "/" of a mux whose other routes carry methods
// or paths of their own). The page
// may not be framed by another site (its buttons change the
// configuration), and loads nothing from anywhere else.
func Handler() http.Handler {
	web, err := fs.Sub(files, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	static := http.FileServerFS(web)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read with GET; actions are POSTs under /api/", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		static.ServeHTTP(w, r)
	})
}
