package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where Server serves the metrics.
const Path = "/metrics"

// Server serves a Collector's metrics, with the Go runtime's and the process's, over HTTP.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// NewRegistry returns a registry with c and the standard Go runtime and process collectors
// (go_*, process_*), whose names every Prometheus user knows.
func NewRegistry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Listen listens on addr (host:port) and serves reg at Path until Close. errLog receives what
// goes wrong while serving a scrape (nil: discarded).
func Listen(addr string, reg prometheus.Gatherer, errLog func(format string, args ...any)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(Path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      printer(errLog),
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap, but nothing stops a client from asking in a loop.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "govs: Prometheus metrics are at %s\n", Path)
	})
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          log.New(printer(errLog), "", 0),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && errLog != nil {
			errLog("metrics: serving %s stopped: %v", addr, err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, giving scrapes in progress a moment to finish.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}

// printer adapts a printf-style function to promhttp's and net/http's loggers.
type printer func(format string, args ...any)

func (p printer) Println(v ...any) {
	if p != nil {
		p("metrics: %s", strings.TrimSpace(fmt.Sprintln(v...)))
	}
}

func (p printer) Write(b []byte) (int, error) {
	if p != nil {
		p("metrics: %s", bytes.TrimSpace(b))
	}
	return len(b), nil
}
