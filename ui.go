package main

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

// swaggerUI holds the static Swagger UI files; swagger-ui/VERSION names
// the swagger-ui-dist release they come from.
//
//go:embed swagger-ui
var swaggerUI embed.FS

// swaggerSpec is the OpenAPI description of the API, served beside the UI
// that reads it.
//
//go:embed swagger.json
var swaggerSpec []byte

// lookupPage holds the order lookup page served at / and its script and
// style sheet.
//
//go:embed web
var lookupPage embed.FS

// lookupHandler serves the lookup page at / and its files under /web/.
func lookupHandler() (page, files http.Handler) {
	sub, err := fs.Sub(lookupPage, "web")
	if err != nil {
		panic(err) // the folder is embedded above
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setPageHeaders(w.Header(), pagePolicy)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(index)
	})
	return page, http.StripPrefix("/web", staticFiles(sub, "/web", pagePolicy))
}

// staticFiles serves the files of fsys under a Content-Security-Policy,
// answering a JSON 404 for a name it does not hold; prefix is where it is
// mounted, for that message. Unlike http.FileServer it serves index.html
// as itself rather than redirecting to the folder.
func staticFiles(fsys fs.FS, prefix string, policy []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setPageHeaders(w.Header(), policy)
		name := strings.TrimPrefix(r.URL.Path, "/")
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such file: " + prefix + r.URL.Path})
			return
		}
		if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(data)
	})
}

// swaggerHandler serves the Swagger UI files and swagger.json at the root
// of its own path space.
func swaggerHandler() http.Handler {
	files, err := fs.Sub(swaggerUI, "swagger-ui")
	if err != nil {
		panic(err) // the folder is embedded above
	}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		panic(err)
	}
	static := staticFiles(files, "/swagger", swaggerPolicy)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/swagger.json":
			writeRaw(w, http.StatusOK, swaggerSpec)
		case "/", "/index.html":
			// Served directly: the file server would redirect
			// index.html to the bare folder.
			setPageHeaders(w.Header(), swaggerPolicy)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(index)
		default:
			static.ServeHTTP(w, r)
		}
	})
}
