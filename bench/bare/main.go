// Command bare is the benchmark's reference server: the least net/http
// can do to answer GET /api/models/cache/{id} with the same bytes as the
// service. It reads the orders from the service's own list route at start
// and keeps them in a plain map, without locks, metrics or checks.
//
//	go run ./bench/bare -addr :8100 -from http://localhost:8000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
)

var newline = []byte{'\n'}

func main() {
	addr := flag.String("addr", "127.0.0.1:8100", "address to listen on")
	from := flag.String("from", "http://127.0.0.1:8000", "service to copy the orders from")
	flag.Parse()

	orders, err := load(*from + "/api/models/cache")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "bare: %d orders, listening on %s\n", len(orders), *addr)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/models/cache/{id}", func(w http.ResponseWriter, r *http.Request) {
		body, ok := orders[r.PathValue("id")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
		w.Write(newline)
	})
	log.Fatal(http.ListenAndServe(*addr, mux))
}

// load reads a JSON array of orders into a map by order_uid.
func load(url string) (map[string][]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var raw []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	orders := make(map[string][]byte, len(raw))
	for _, body := range raw {
		var head struct {
			OrderUID string `json:"order_uid"`
		}
		if err := json.Unmarshal(body, &head); err != nil {
			return nil, err
		}
		orders[head.OrderUID] = body
	}
	return orders, nil
}
