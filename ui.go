package main

import (
	"embed"
	"io/fs"
	"net/http"
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
	static := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/swagger.json":
			writeRaw(w, http.StatusOK, swaggerSpec)
		case "/", "/index.html":
			// Served directly: the file server would redirect
			// index.html to the bare folder.
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(index)
		default:
			if _, err := fs.Stat(files, strings.TrimPrefix(r.URL.Path, "/")); err != nil {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such file: /swagger" + r.URL.Path})
				return
			}
			static.ServeHTTP(w, r)
		}
	})
}
