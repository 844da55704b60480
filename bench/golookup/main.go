// Command golookup is a reference for the benchmark: the database route's
// key lookup run from Go through database/sql and lib/pq, as the service
// runs it, by a number of clients for a fixed time, without HTTP in front.
// Set beside pgbench running the same lookup, it shows what the driver
// costs on its own.
//
//	go run ./bench/golookup -url postgres://... -c 5 -d 10s -n 100000
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq"
)

func main() {
	url := flag.String("url", "", "PostgreSQL connection URL")
	clients := flag.Int("c", 5, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "how long to run")
	n := flag.Int("n", 100000, "orders in the table, ids bench-00000001 to bench-N")
	flag.Parse()

	db, err := sql.Open("postgres", *url)
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(*clients)
	db.SetMaxIdleConns(*clients)
	stmt, err := db.Prepare(`SELECT body FROM orders WHERE order_uid = $1`)
	if err != nil {
		log.Fatal(err)
	}

	var done, failed atomic.Int64
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *clients {
		wg.Go(func() {
			var body []byte
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				uid := fmt.Sprintf("bench-%08d", 1+rand.IntN(*n))
				if err := stmt.QueryRowContext(ctx, uid).Scan(&body); err != nil {
					failed.Add(1)
				} else {
					done.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	fmt.Printf("lookups/s %.0f failed %d\n", float64(done.Load())/dur.Seconds(), failed.Load())
}
