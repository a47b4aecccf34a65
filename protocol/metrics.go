package protocol

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are a coordinator's Prometheus metrics, in a registry of its
// own (never the global one). They count what the coordinator already
// logs: rounds and their outcomes, phase durations, sessions, bytes, and
// the ε its ledger has spent; nothing derived from the sites' data.
//
//	fl_secure_rounds_total{status}                started, opened, failed, skipped
//	fl_secure_phase_duration_seconds{phase}       histogram per phase of a round
//	fl_secure_phase_timeouts_total{phase}         phases that ended at the timeout
//	fl_secure_sites_connected                     sessions open now
//	fl_secure_site_received_bytes_total{site}     bytes of the site's messages
//	fl_secure_site_sent_bytes_total{site}         bytes of the messages to the site
//	fl_secure_ledger_epsilon_spent{ledger}        ε spent (at the ledger's δ)
//	fl_secure_ledger_epsilon_left{ledger}         ε left of the ledger's cap
//	fl_secure_round                               the current training round
//
// Bytes are the protobuf sizes of the messages (proto.Size), without the
// gRPC and TLS framing. The site label is "site-N", N its roster id, as
// in the kits' directory names.
type metrics struct {
	reg       *prometheus.Registry
	rounds    *prometheus.CounterVec
	phase     *prometheus.HistogramVec
	timeouts  *prometheus.CounterVec
	connected prometheus.Gauge
	in, out   *prometheus.CounterVec
	spent     *prometheus.GaugeVec
	left      *prometheus.GaugeVec
	round     prometheus.Gauge

	mu      sync.Mutex
	state   string // "starting", "serving", "finished", "failed"
	current int
	phaseOf string
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fl_secure_rounds_total",
			Help: "Training round attempts by status: started, opened, failed, skipped (refused by the budget)."}, []string{"status"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fl_secure_phase_duration_seconds",
			Help:    "How long the coordinator waited for the sites in each phase of a round.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10)}, []string{"phase"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fl_secure_phase_timeouts_total",
			Help: "Phases that ended at the phase timeout with sites still silent."}, []string{"phase"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fl_secure_sites_connected",
			Help: "Sites with a session open now."}),
		in: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fl_secure_site_received_bytes_total",
			Help: "Bytes (protobuf size) of the messages received from each site."}, []string{"site"}),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fl_secure_site_sent_bytes_total",
			Help: "Bytes (protobuf size) of the messages sent to each site."}, []string{"site"}),
		spent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fl_secure_ledger_epsilon_spent",
			Help: "ε the privacy ledger has spent, at its δ."}, []string{"ledger"}),
		left: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fl_secure_ledger_epsilon_left",
			Help: "ε left of the privacy ledger's cap."}, []string{"ledger"}),
		round: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fl_secure_round",
			Help: "The training round the coordinator is in (0: the statistics release or none yet)."}),
		state: "starting",
	}
	m.reg.MustRegister(m.rounds, m.phase, m.timeouts, m.connected, m.in, m.out, m.spent, m.left, m.round)
	for _, s := range []string{"started", "opened", "failed", "skipped"} {
		m.rounds.WithLabelValues(s)
	}
	return m
}

func siteLabel(site int) string { return "site-" + strconv.Itoa(site) }

// setRound records the round and phase /healthz reports.
func (m *metrics) setRound(round int, phase string) {
	m.mu.Lock()
	m.current, m.phaseOf = round, phase
	m.mu.Unlock()
	m.round.Set(float64(round))
}

// currentRound returns the round setRound recorded.
func (m *metrics) currentRound() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current
}

// setPhase records the phase /healthz reports.
func (m *metrics) setPhase(phase string) {
	m.mu.Lock()
	m.phaseOf = phase
	m.mu.Unlock()
}

func (m *metrics) setState(s string) {
	m.mu.Lock()
	m.state = s
	m.mu.Unlock()
}

// observePhase records that phase took d.
func (m *metrics) observePhase(phase string, d time.Duration, timedOut bool) {
	m.phase.WithLabelValues(phase).Observe(d.Seconds())
	if timedOut {
		m.timeouts.WithLabelValues(phase).Inc()
	}
}

// ledger records a ledger's spend and what is left of its cap.
func (m *metrics) ledger(name string, spent, cap float64) {
	m.spent.WithLabelValues(name).Set(spent)
	m.left.WithLabelValues(name).Set(max(cap-spent, 0))
}

// Health is what /healthz reports.
type Health struct {
	// Status is "starting" (before Run), "serving", "finished" or
	// "failed"; the code is 200 only while serving.
	Status string `json:"status"`
	Round  int    `json:"round"`
	Phase  string `json:"phase,omitempty"`
	Sites  int    `json:"sites_connected"`
}

// MetricsHandler returns the coordinator's monitoring endpoints, to serve
// on a listener of their own (never the sites' TLS port):
//
//	/metrics  Prometheus text exposition of the metrics above
//	/healthz  200 and a Health object in JSON while Run is running
//	          (503 before and after), with the round and phase
//
// Neither needs authentication, so bind it to loopback or a monitoring
// network: what it shows is what the coordinator's log shows.
func (c *Coordinator) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		m := c.metrics
		m.mu.Lock()
		h := Health{Status: m.state, Round: m.current, Phase: m.phaseOf}
		m.mu.Unlock()
		h.Sites = len(c.connected())
		w.Header().Set("Content-Type", "application/json")
		if h.Status != "serving" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	return mux
}
