package protocol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
	"github.com/fl-secure/fl-secure/secagg"
)

// MaxMessage bounds every gRPC message in either direction (256 MiB: a
// d = 2^24 vector of 64-bit ring elements with room to spare).
var MaxMessage = 256 << 20

// wireVersion is the protocol version a Hello must carry.
const wireVersion = 1

// Engine phases of a secagg round on the wire.
const (
	phaseAdvert = iota
	phaseShares
	phaseMasked
	phaseConsistency
	phaseUnmask
)

// CoordinatorConfig configures a network coordinator.
type CoordinatorConfig struct {
	Cert, Key, CA string
	Roster        *Roster
	Mode          Mode // SecAgg or Plain over the network
	// Level is dp.RecordLevel (sites send sums of clipped per-record
	// gradients) or dp.ClientLevel (sites send one clipped update each,
	// trained locally or elsewhere).
	Level        dp.Level
	Rounds       int
	Epsilon      float64 // 0: no DP (refused by sites unless they allow it)
	Delta        float64
	Clip         float64
	LearningRate float64
	Model        string
	Features     int
	Classes      int
	Hidden       int
	MinCohort    int
	Colluders    int
	Bits         int
	PhaseTimeout time.Duration
	// TrainTimeout bounds the first phase of a training round, in which
	// every site computes its update from the round's model before it
	// answers — local training, or a hospital's own trainer command
	// (default: PhaseTimeout). Every later phase has PhaseTimeout.
	TrainTimeout time.Duration
	// MaxBuffered bounds the bytes of one site's messages the coordinator
	// holds before a phase reads them (default 2 × MaxMessage). A site
	// that sends more is flooding: its session is closed.
	MaxBuffered int
	// RoundAttempts bounds the attempts of one round that reach the masked
	// inputs, where the sites pay for them (default 2, the sites' own
	// default bound); then the run stops, naming the sites responsible.
	RoundAttempts int
	// JoinWait is how long the coordinator waits for every site before
	// starting a round with those connected (at least MinCohort).
	JoinWait time.Duration
	State    string // directory: ledger, statistics, checkpoints, witness copies
	// LedgerKey is the ledger's signing key file, in the coordinator's kit
	// (Provision writes it; default: ledger-key.pem beside Key). Its
	// public key must be the roster's coordinator ledger key, under which
	// sites cosign the ledger's checkpoints. Without Key or LedgerKey it
	// is State/ledger-key.pem, beside the ledger (tests and simulations
	// without a kit).
	LedgerKey string
	Logger    *slog.Logger
	Progress  func(RoundResult)
	// Passphrase, if set, decrypts the coordinator's TLS key and encrypts
	// its ledger's signing key at rest (see SiteConfig.Passphrase).
	// Without one they are stored unencrypted and NewCoordinator logs a
	// warning.
	Passphrase atrest.Passphrase
	// InMemory builds a coordinator without a gRPC server: Cert, Key and CA
	// are not read, Serve fails, and sites join only through
	// ConnectInMemory, in this process. A coordinator without it accepts
	// in-memory sessions too, beside its gRPC ones. For simulations and
	// tests; an in-memory session is as trusted as the code that opens it.
	InMemory bool
	// PlanRounds is how many rounds the noise is calibrated for (0:
	// Rounds). With more Rounds than PlanRounds the ledger refuses the
	// round that would pass Epsilon, and the run ends there
	// (RoundResult.Status "budget-refused").
	PlanRounds int
	// Test, if set, is a test set held by the coordinator: every published
	// model is evaluated on it, standardized with the federation's
	// statistics (features, and for regression the label, whose RMSE is
	// reported in the label's units), into RoundResult.Test and
	// Summary.Test.
	Test *fl.Dataset
	// Ranges are the public bounds of the features and, for regression,
	// of the label (last), in column order (fl.Ranges.RangesFor): the
	// statistics round clips every value to them, so they decide its
	// sensitivity's units, never its bound. Required.
	Ranges []fl.Range
	// StatisticsShare is the share of the privacy budget (of its zCDP ρ,
	// dp.SplitCalibrate) the statistics release takes; 0 means
	// dp.DefaultStatisticsShare.
	StatisticsShare float64
	// PublicStatistics skips the statistics round: features are
	// standardized with the Ranges' public mean and scale (or midpoint and
	// half-width) and the record-level learning rate is divided by Rows,
	// a public nominal count of records. Nothing is released or charged
	// before training. Without Ranges nothing is standardized (sites that
	// send updates trained elsewhere).
	PublicStatistics bool
	Rows             int
	// AverageFrom, if positive, makes Summary.Model (and Summary.Test) the
	// average of the models published from that round on: tail averaging,
	// post-processing of released models, so it costs no ε and averages
	// out noise. 0 keeps the last model.
	AverageFrom int
	// NoSync writes the coordinator's state files (the session counter,
	// the statistics, the checkpoints) atomically but without fsync, so a
	// crash of the machine may lose the newest of them. For simulations
	// whose state lives no longer than the process; a coordinator of a real
	// federation never sets it (its session identifiers must survive a
	// crash). The ledger is fsync'ed regardless.
	NoSync bool
	// BeforeRound, if set, is called before the cohort of each training
	// round is gathered, once per round whatever its attempts: a
	// simulation takes sites offline or brings them back there.
	BeforeRound func(round int)
	// Events, if set, receives the coordinator's events (EventLog); the
	// caller closes it after Run.
	Events *EventLog
	// KeepCheckpoints, if positive, prunes the model checkpoints after
	// each one is written: the newest KeepCheckpoints are kept, and every
	// 10th round's, and every round's from AverageFrom on (tail averaging
	// reads them on a resume). The newest is always kept: a resume starts
	// from it. 0 keeps every checkpoint.
	KeepCheckpoints int
	// AnnouncePlan sends every site, in its Welcome, the federation's plan
	// (rounds, ε, δ, level) and the roster's digest, so that a site whose
	// own cap cannot cover the plan, or whose roster differs, refuses at
	// once (wire.Plan). Sites still check every round.
	AnnouncePlan bool

	// hooks are the fault simulator's observation and crash points
	// (simhooks.go); nil outside tests.
	hooks *simHooks
}

// A Coordinator drives rounds over the sites' sessions.
type Coordinator struct {
	cfg         CoordinatorConfig
	log         *slog.Logger
	mu          sync.Mutex
	sessions    map[int]*session
	changed     chan struct{}
	srv         *grpc.Server
	lastSession uint64               // the newest session identifier used
	banned      map[int]string       // sites left out of the rest of the run, and why
	accusations map[int]map[int]bool // accused site → sites that could not open its shares
	crs         [32]byte             // mode he: the group's common reference string
	// misbehaviour records, per site, why it was found misbehaving (at
	// most maxReasons each, the newest last); guarded by mu.
	misbehaviour map[int][]string
	// waitLog is how often waitFor says which sites it waits for.
	waitLog time.Duration
	// mem holds the in-memory sessions (memnet.go).
	mem memSessions
	// ledger is the run's ledger (nil without DP); witnessed holds, per
	// site, the newest checkpoint of it the site cosigned (witness.go).
	ledger    *dp.Ledger
	witnessMu sync.Mutex
	witnessed map[int]*dp.Checkpoint
	// metrics are always kept (MetricsHandler serves them); eventErr is
	// set once an event could not be written.
	metrics  *metrics
	eventErr atomic.Bool
	// refusedPlan holds, per site, why it refused the plan at its last
	// Welcome, until it joins again; guarded by mu.
	refusedPlan map[int]string
	// phaseName (a string) names the phase the next collect waits for,
	// for metrics and events; without one, collect names it from the
	// messages it got (phaseOf).
	phaseName atomic.Value
	// phaseWait (a time.Duration), if set, bounds the next collect
	// instead of PhaseTimeout.
	phaseWait atomic.Int64
	wire.UnimplementedCoordinatorServer
}

// sessionID makes a fresh session identifier for training round r (0 for
// the statistics round and the key ceremony). secagg and he bind every
// key, share and signature to it, and sites refuse one that is not larger
// than the last they joined, so identifiers strictly increase, across
// restarts too: the last one is on disk before it is used.
func (c *Coordinator) sessionID(r int) (uint64, error) {
	id := uint64(r) << 20
	if c.lastSession >= id {
		id = c.lastSession + 1
	}
	if roundOf(id) != r {
		return 0, fmt.Errorf("protocol: round %d has used all %d session identifiers", r, 1<<20)
	}
	b, _ := json.Marshal(struct {
		Last uint64 `json:"last_session"`
	}{id})
	if err := c.cfg.hooks.crashAt("sessions", r); err != nil {
		return 0, err
	}
	if err := writeState(filepath.Join(c.cfg.State, "sessions.json"), b, !c.cfg.NoSync); err != nil {
		return 0, err
	}
	if err := c.cfg.hooks.crashAt("sessions written", r); err != nil {
		return 0, err
	}
	c.lastSession = id
	return id, nil
}

// loadSessions reads the last session identifier used.
func (c *Coordinator) loadSessions() error {
	b, err := os.ReadFile(filepath.Join(c.cfg.State, "sessions.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st struct {
		Last uint64 `json:"last_session"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("protocol: %s is corrupt: %v", filepath.Join(c.cfg.State, "sessions.json"), err)
	}
	c.lastSession = st.Last
	return nil
}

// statisticsSigning is the file that holds the statistics survivor set
// the sites were asked to sign, until the statistics are saved.
const statisticsSigning = "statistics-signing.json"

// saveStatisticsSigning records, durably, the statistics survivor set the
// sites are about to be asked to sign.
func (c *Coordinator) saveStatisticsSigning(set []int) error {
	b, _ := json.Marshal(struct {
		Survivors []int `json:"survivors"`
	}{set})
	return writeAtomic(filepath.Join(c.cfg.State, statisticsSigning), b)
}

// loadStatisticsSigning returns the statistics survivor set the sites
// were asked to sign before a restart, or nil.
func (c *Coordinator) loadStatisticsSigning() ([]int, error) {
	path := filepath.Join(c.cfg.State, statisticsSigning)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		Survivors []int `json:"survivors"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("protocol: %s is corrupt: %v", path, err)
	}
	if len(st.Survivors) < c.cfg.MinCohort {
		return nil, fmt.Errorf("protocol: %s names %d sites, fewer than the minimum cohort of %d", path, len(st.Survivors), c.cfg.MinCohort)
	}
	for _, site := range st.Survivors {
		if !c.cfg.Roster.has(site) {
			return nil, fmt.Errorf("protocol: %s names site %d, which is not on the roster", path, site)
		}
	}
	c.log.Info("the sites were asked to sign a statistics survivor set before a restart; only it can open", "survivors", fmt.Sprint(st.Survivors))
	return st.Survivors, nil
}

// roundOf returns the training round of a session identifier.
func roundOf(session uint64) int { return int(session >> 20) }

// A session is one site's authenticated stream. site comes from the TLS
// certificate (checked against the Hello) and never changes: every message
// read from inbox is that site's.
type session struct {
	site   int
	inbox  chan *wire.SiteMessage
	send   func(*wire.CoordinatorMessage) error
	done   chan struct{} // closed when a newer session of the site replaces this one
	closed chan struct{} // closed when the stream has ended and inbox holds all it will
	// buffered is the size (proto.Size) of the messages in inbox, at most
	// CoordinatorConfig.MaxBuffered.
	buffered atomic.Int64
	// flooded is set when the site sent more than MaxBuffered: nothing
	// more from this session is processed.
	flooded atomic.Bool
}

// reserve accounts for a message of n bytes entering the inbox, or reports
// that it would take the inbox over budget.
func (s *session) reserve(n, budget int64) bool {
	for {
		b := s.buffered.Load()
		if b+n > budget {
			return false
		}
		if s.buffered.CompareAndSwap(b, b+n) {
			return true
		}
	}
}

// take accounts for m leaving the inbox.
func (s *session) take(m *wire.SiteMessage) { s.buffered.Add(-int64(proto.Size(m))) }

// drain empties the inbox.
func (s *session) drain() {
	for {
		select {
		case m := <-s.inbox:
			s.take(m)
		default:
			return
		}
	}
}

// NewCoordinator validates cfg and prepares the gRPC server (TLS 1.3,
// client certificates checked against the roster before any message).
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if cfg.Roster == nil {
		return nil, errors.New("protocol: coordinator needs a roster")
	}
	if cfg.Mode == "" {
		cfg.Mode = SecAgg
	}
	if cfg.Mode != SecAgg && cfg.Mode != Plain && cfg.Mode != HE {
		return nil, fmt.Errorf("protocol: unknown mode %q (secagg, he, plain)", cfg.Mode)
	}
	n := len(cfg.Roster.Sites)
	if cfg.MinCohort == 0 {
		cfg.MinCohort = max(3, n/2+1)
	}
	if cfg.MinCohort < 3 || cfg.MinCohort > n || cfg.Colluders < 0 || cfg.Colluders >= cfg.MinCohort {
		return nil, fmt.Errorf("protocol: minimum cohort %d with %d colluders for %d sites", cfg.MinCohort, cfg.Colluders, n)
	}
	if cfg.Mode == SecAgg && cfg.Colluders > cfg.MinCohort-2 {
		// A round of the minimum cohort k has threshold max(⌊k/2⌋+1, c+1),
		// which secagg needs at most k − 1: with more colluders every such
		// round would fail after the sites paid.
		return nil, fmt.Errorf("protocol: %d colluders need a minimum cohort of at least %d in secagg (the Shamir threshold c + 1 must be below the cohort), not %d", cfg.Colluders, cfg.Colluders+2, cfg.MinCohort)
	}
	if cfg.PlanRounds == 0 {
		cfg.PlanRounds = cfg.Rounds
	}
	if cfg.PlanRounds < 1 || cfg.AverageFrom < 0 {
		return nil, fmt.Errorf("protocol: noise planned for %d rounds, averaging from round %d", cfg.PlanRounds, cfg.AverageFrom)
	}
	if cfg.Rounds < 1 || !(cfg.Clip > 0) || !(cfg.LearningRate > 0) || cfg.Features < 1 {
		return nil, fmt.Errorf("protocol: rounds %d, clip %v, learning rate %v, features %d", cfg.Rounds, cfg.Clip, cfg.LearningRate, cfg.Features)
	}
	if cfg.Epsilon > 0 && cfg.Mode == Plain {
		return nil, errors.New("protocol: DP needs secagg: in plain mode the coordinator sees every update")
	}
	if cfg.Bits == 0 {
		cfg.Bits = 32
	}
	if cfg.StatisticsShare == 0 {
		cfg.StatisticsShare = dp.DefaultStatisticsShare
	}
	if !(cfg.StatisticsShare > 0 && cfg.StatisticsShare < 1) {
		return nil, fmt.Errorf("protocol: statistics share %v: want a fraction in (0, 1), or PublicStatistics for none", cfg.StatisticsShare)
	}
	if cfg.Rows < 0 || cfg.PublicStatistics && cfg.Level != dp.ClientLevel && cfg.Rows == 0 {
		return nil, fmt.Errorf("protocol: nominal count of records %d: without a statistics round a record-level run needs a public count of records (Rows)", cfg.Rows)
	}
	if cfg.Level == "" {
		cfg.Level = dp.RecordLevel
	}
	if cfg.Level != dp.RecordLevel && cfg.Level != dp.ClientLevel {
		return nil, fmt.Errorf("protocol: level %q is neither record nor client", cfg.Level)
	}
	if cfg.PhaseTimeout == 0 {
		cfg.PhaseTimeout = 30 * time.Second
	}
	if cfg.PhaseTimeout < 0 || cfg.TrainTimeout < 0 {
		return nil, fmt.Errorf("protocol: phase timeout %v, train timeout %v: want positive durations", cfg.PhaseTimeout, cfg.TrainTimeout)
	}
	if cfg.MaxBuffered == 0 {
		cfg.MaxBuffered = 2 * MaxMessage
	}
	if cfg.MaxBuffered < 0 {
		return nil, fmt.Errorf("protocol: MaxBuffered %d is negative", cfg.MaxBuffered)
	}
	if cfg.RoundAttempts == 0 {
		cfg.RoundAttempts = 2
	}
	if cfg.KeepCheckpoints < 0 {
		return nil, fmt.Errorf("protocol: keep %d checkpoints: want a positive count, or 0 for all", cfg.KeepCheckpoints)
	}
	if cfg.Classes == 0 {
		cfg.Classes = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.State == "" {
		return nil, errors.New("protocol: coordinator needs a state directory")
	}
	if cfg.LedgerKey == "" && cfg.Key != "" {
		cfg.LedgerKey = filepath.Join(filepath.Dir(cfg.Key), ledgerKeyFile)
	}
	if !cfg.Passphrase.IsSet() {
		cfg.Logger.Warn(noPassphraseWarning)
	}
	c := &Coordinator{cfg: cfg, log: cfg.Logger, sessions: map[int]*session{}, changed: make(chan struct{}, 1), waitLog: 5 * time.Second, banned: map[int]string{},
		witnessed: map[int]*dp.Checkpoint{}, metrics: newMetrics(), refusedPlan: map[int]string{}}
	c.mem.init()
	if cfg.InMemory {
		return c, nil
	}
	tc, err := serverTLS(cfg.Cert, cfg.Key, cfg.CA, cfg.Roster, cfg.Logger, cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	c.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)), grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage))
	wire.RegisterCoordinatorServer(c.srv, c)
	return c, nil
}

// Serve accepts sessions on lis until Stop.
func (c *Coordinator) Serve(lis net.Listener) error {
	if c.srv == nil {
		return errors.New("protocol: this coordinator is in-memory only (CoordinatorConfig.InMemory): it serves no network")
	}
	return c.srv.Serve(lis)
}

// Stop closes every session and the listener.
func (c *Coordinator) Stop() {
	if c.srv != nil {
		c.srv.Stop()
	}
	c.mem.stop()
}

// Shutdown lets the sites receive what was sent to them (the final
// goodbye) and close their sessions, for at most timeout, then stops.
func (c *Coordinator) Shutdown(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		if c.srv != nil {
			c.srv.GracefulStop()
		}
		c.mem.drain()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		c.Stop()
	}
}

// Session implements the gRPC service: it authenticates the site by its
// certificate, checks its Hello, and relays its messages to the round
// driver until the stream ends. The site a message is attributed to is the
// one its certificate names, fixed here once; no message can change it.
// A refusal of identity is PermissionDenied or Unauthenticated, which a
// site reads as "this kit does not belong here".
func (c *Coordinator) Session(stream wire.Coordinator_SessionServer) error {
	p, ok := peer.FromContext(stream.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "protocol: no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "protocol: session without a client certificate")
	}
	site, ok := c.cfg.Roster.siteForCert(ti.State.PeerCertificates[0].Raw)
	if !ok {
		return status.Error(codes.PermissionDenied, "protocol: certificate not on the roster")
	}
	return c.serve(stream, site)
}

// A coordStream is the coordinator's end of one site's session: the gRPC
// server stream, or an in-memory one (memnet.go).
type coordStream interface {
	Send(*wire.CoordinatorMessage) error
	Recv() (*wire.SiteMessage, error)
	Context() context.Context
}

// serve runs the session of site, already authenticated by its transport:
// it checks the Hello against site, registers the session, and feeds the
// inbox with what the site sends, within MaxBuffered bytes, until the
// stream ends. Every message is attributed to site and no message can
// change that. Its error is the status the site's stream ends with.
func (c *Coordinator) serve(stream coordStream, site int) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	received := c.metrics.in.WithLabelValues(siteLabel(site))
	sentBytes := c.metrics.out.WithLabelValues(siteLabel(site))
	received.Add(float64(proto.Size(first)))
	switch h := first.GetHello(); {
	case h == nil:
		c.misbehaved(site, "its first message is not a Hello")
		return status.Errorf(codes.PermissionDenied, "protocol: the first message must be Hello from site %d", site)
	case int(h.Site) != site:
		c.misbehaved(site, fmt.Sprintf("its Hello claims site %d", h.Site))
		return status.Errorf(codes.PermissionDenied, "protocol: this certificate is site %d's; the Hello claims site %d", site, h.Site)
	case h.Version != wireVersion:
		c.log.Warn("site speaks another wire version", "site", site, "version", h.Version, "want", wireVersion)
		return status.Errorf(codes.FailedPrecondition, "protocol: wire version %d; this coordinator speaks version %d", h.Version, wireVersion)
	default:
		c.noteWitnessed(site, first.GetHello().Witnessed)
	}
	var sendMu sync.Mutex
	s := &session{site: site, inbox: make(chan *wire.SiteMessage, 64), done: make(chan struct{}), closed: make(chan struct{}),
		send: func(m *wire.CoordinatorMessage) error {
			sendMu.Lock()
			defer sendMu.Unlock()
			sentBytes.Add(float64(proto.Size(m)))
			return stream.Send(m)
		}}
	if err := s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Welcome{Welcome: &wire.Welcome{Site: uint32(site), Mode: string(c.cfg.Mode), Plan: c.plan()}}}); err != nil {
		return err
	}
	c.mu.Lock()
	if old, ok := c.sessions[site]; ok {
		close(old.done)
	}
	c.sessions[site] = s
	delete(c.refusedPlan, site)
	c.metrics.connected.Set(float64(len(c.sessions)))
	c.mu.Unlock()
	c.notify()
	c.log.Info("site connected", "site", site)
	c.event(Event{Event: "site_joined", Site: site})
	left := "disconnected"
	defer func() {
		// A phase waiting for this site stops waiting now.
		close(s.closed)
		if s.flooded.Load() {
			s.drain()
		}
		c.mu.Lock()
		if c.sessions[site] == s {
			delete(c.sessions, site)
		}
		c.metrics.connected.Set(float64(len(c.sessions)))
		c.mu.Unlock()
		c.notify()
		select {
		case <-s.done:
			left = "replaced by a newer session"
		default:
		}
		c.log.Info("site disconnected", "site", site, "reason", left)
		c.event(Event{Event: "site_left", Site: site, Reason: left})
	}()
	budget := int64(c.cfg.MaxBuffered)
	for {
		m, err := stream.Recv()
		if err != nil {
			// The stream is gone (the site closed it, the connection
			// broke, or its context ended): the deferred close of
			// s.closed makes every phase waiting for it go on now.
			return nil
		}
		received.Add(float64(proto.Size(m)))
		if r := m.GetRefuse(); r != nil && r.Round == 0 {
			// The site refuses the federation's plan (wire.Plan) and
			// ends its session.
			why := truncate(r.Reason, 500)
			c.log.Warn("site refused the federation's plan at join; it takes part in no round until its operator acts", "site", site, "reason", why)
			c.mu.Lock()
			c.refusedPlan[site] = why
			c.mu.Unlock()
			c.event(Event{Event: "site_refused", Site: site, Round: intp(0), Reason: why})
			left = "refused the plan"
			return status.Errorf(codes.FailedPrecondition, "protocol: site %d refused the federation's plan", site)
		}
		if h := m.GetHello(); h != nil {
			// The site was bound to its certificate by the first Hello; a
			// second one renames nothing.
			c.misbehaved(site, fmt.Sprintf("a second Hello, claiming site %d", h.Site))
			continue
		}
		// Bound what one site can make the coordinator hold: gRPC bounds
		// each message by MaxMessage, this bounds their sum.
		if n := int64(proto.Size(m)); !s.reserve(n, budget) {
			s.flooded.Store(true)
			left = "flooding"
			c.misbehaved(site, fmt.Sprintf("flooding: %d bytes waiting and %d more sent, over the limit of %d; session closed",
				s.buffered.Load(), n, budget))
			return status.Errorf(codes.ResourceExhausted, "protocol: site %d sent more than the coordinator holds for a site (%d bytes); session closed", site, budget)
		}
		select {
		case s.inbox <- m:
		case <-s.done:
			return nil
		case <-stream.Context().Done():
			return nil
		}
	}
}

// buffered returns the bytes held for site's current session.
func (c *Coordinator) buffered(site int) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sessions[site]; ok {
		return s.buffered.Load()
	}
	return 0
}

// maxReasons bounds the reasons kept per site, so that a site cannot grow
// the tally without bound by misbehaving.
const maxReasons = 32

// misbehaved logs that site broke the protocol and records why: a message
// its certificate carried that claims another sender, or that no honest
// site sends. reason must name no secret.
func (c *Coordinator) misbehaved(site int, reason string) {
	c.log.Warn("site misbehaved", "site", site, "reason", reason)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.misbehaviour == nil {
		c.misbehaviour = map[int][]string{}
	}
	r := append(c.misbehaviour[site], reason)
	if len(r) > maxReasons {
		r = r[len(r)-maxReasons:]
	}
	c.misbehaviour[site] = r
}

// Misbehaviour returns, per site, the reasons it was found misbehaving
// (the newest last, at most 32 each). The map is a copy.
func (c *Coordinator) Misbehaviour() map[int][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int][]string, len(c.misbehaviour))
	for site, r := range c.misbehaviour {
		out[site] = slices.Clone(r)
	}
	return out
}

func (c *Coordinator) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// missing lists the roster's sites that are not in sess, at most 20 of
// them, as "site-N", each followed by why it left if it refused the plan.
func (c *Coordinator) missing(sess []*session) string {
	have := map[int]bool{}
	for _, s := range sess {
		have[s.site] = true
	}
	c.mu.Lock()
	refused := maps.Clone(c.refusedPlan)
	c.mu.Unlock()
	var out []string
	n := 0
	for _, r := range c.cfg.Roster.Sites {
		if have[r.ID] {
			continue
		}
		if n++; n <= 20 {
			name := siteLabel(r.ID)
			if why, ok := refused[r.ID]; ok {
				name += " (refused the plan: " + why + ")"
			}
			out = append(out, name)
		}
	}
	if n > 20 {
		out = append(out, fmt.Sprintf("and %d more", n-20))
	}
	return strings.Join(out, ", ")
}

// waitingText is the periodic line of waitFor: "waiting for sites: 2 of
// 3 (missing site-3)".
func (c *Coordinator) waitingText(sess []*session, want int) string {
	t := fmt.Sprintf("waiting for sites: %d of %d (missing %s)", len(sess), len(c.cfg.Roster.Sites), c.missing(sess))
	if len(sess) < want {
		t += fmt.Sprintf("; a round needs %d", want)
	}
	return t
}

// plan returns the Plan a Welcome announces, or nil without
// AnnouncePlan.
func (c *Coordinator) plan() *wire.Plan {
	if !c.cfg.AnnouncePlan {
		return nil
	}
	d := c.cfg.Roster.Digest()
	p := &wire.Plan{Rounds: uint32(c.cfg.Rounds), Epsilon: c.cfg.Epsilon, Level: string(c.cfg.Level),
		Sites: uint32(len(c.cfg.Roster.Sites)), RosterSha256: d[:]}
	if c.cfg.Epsilon > 0 {
		p.Delta = c.cfg.Delta
	}
	return p
}

// Connected returns the sites that have a session open with this
// coordinator now, in order.
func (c *Coordinator) Connected() []int {
	var out []int
	for _, s := range c.connected() {
		out = append(out, s.site)
	}
	return out
}

// sessionOf returns site's current session, or nil.
func (c *Coordinator) sessionOf(site int) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessions[site]
}

// connected returns the connected sites' sessions, sorted.
func (c *Coordinator) connected() []*session {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*session
	for _, s := range c.sessions {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].site < out[j].site })
	return out
}

// waitFor waits until every site is connected, or JoinWait has passed with
// at least want connected. Every waitLog it logs who is missing.
// It wakes on every change of the sessions (c.changed), at the deadline
// and to log, and polls nothing.
func (c *Coordinator) waitFor(ctx context.Context, want int) ([]*session, error) {
	deadline := time.Now().Add(c.cfg.JoinWait)
	report := time.Now().Add(c.waitLog)
	for {
		s := c.connected()
		now := time.Now()
		if len(s) == len(c.cfg.Roster.Sites) || (len(s) >= want && !now.Before(deadline)) {
			return s, nil
		}
		if !now.Before(report) {
			c.log.Info(c.waitingText(s, want), "have", len(s), "of", len(c.cfg.Roster.Sites), "need", want)
			report = now.Add(c.waitLog)
		}
		wake := report
		if len(s) >= want && deadline.Before(wake) {
			wake = deadline
		}
		timer := time.NewTimer(wake.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-c.changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// coordState is what survives a coordinator restart.
type coordState struct {
	Mean  []float64 `json:"mean"`
	Scale []float64 `json:"scale"`
	// Rows is the learning rate's denominator at record level: the noised
	// count of records (clamped to at least 1), or the public nominal
	// count. RowsBound bounds it with a safety margin, for the ring.
	Rows      float64 `json:"rows"`
	RowsBound float64 `json:"rows_bound,omitempty"`
	// LabelMean and LabelScale standardize a regression label (the linear
	// model); 0 and 0 elsewhere.
	LabelMean  float64 `json:"label_mean,omitempty"`
	LabelScale float64 `json:"label_scale,omitempty"`
}

// labelScale returns the scale of the label (1 without one).
func (st coordState) labelScale() float64 {
	if st.LabelScale > 0 {
		return st.LabelScale
	}
	return 1
}

// rowsBound returns the bound on the records for the ring (Rows for a
// state written before RowsBound existed).
func (st coordState) rowsBound() float64 { return math.Max(st.RowsBound, st.Rows) }

// wireStandardization returns the standardization a RoundStart carries:
// the features' means and scales, and for regression the label's last.
func (st coordState) wireStandardization(regression bool) ([]float64, []float64) {
	if !regression {
		return st.Mean, st.Scale
	}
	return append(slices.Clone(st.Mean), st.LabelMean), append(slices.Clone(st.Scale), st.labelScale())
}

// Run waits for sites and runs the federation: a statistics round (if not
// done before a restart), then training rounds until Rounds have been
// charged or the budget refuses. After a crash it resumes from the ledger
// and the last checkpoint: a round charged but not checkpointed is not run
// again (its budget is spent) and the model resumes from the checkpoint
// before it.
//
// While it runs, MetricsHandler's /healthz reports it serving; every
// round's outcome goes to the metrics and the event log.
func (c *Coordinator) Run(ctx context.Context) (*Summary, error) {
	c.metrics.setState("serving")
	sum, err := c.run(ctx)
	ok := 0
	if err != nil {
		c.metrics.setState("failed")
		c.event(Event{Event: "run_finished", Status: "failed", Reason: err.Error()})
		return nil, err
	}
	for _, r := range sum.Rounds {
		if r.Status == "ok" {
			ok++
		}
	}
	c.metrics.setState("finished")
	c.event(Event{Event: "run_finished", Status: "ok", Rounds: ok, Epsilon: floatp(sum.Epsilon)})
	return sum, nil
}

func (c *Coordinator) run(ctx context.Context) (*Summary, error) {
	cfg := c.cfg
	began := time.Now()
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return nil, err
	}
	if err := c.loadSessions(); err != nil {
		return nil, err
	}
	task := fl.Binary
	switch {
	case cfg.Model == "linear":
		task = fl.Regression
	case cfg.Classes > 2:
		task = fl.Multiclass
	}
	model, err := fl.NewModel(cfg.Model, task, cfg.Features, cfg.Classes, cfg.Hidden)
	if err != nil {
		return nil, err
	}
	d := model.NumParams()
	regression := task == fl.Regression
	if cfg.Test != nil && (cfg.Test.Dim() != cfg.Features || cfg.Test.Task != task) {
		return nil, fmt.Errorf("protocol: the test set has %d features for a %s task; the federation trains a %s model on %d", cfg.Test.Dim(), cfg.Test.Task, cfg.Model, cfg.Features)
	}
	sum := &Summary{Mode: cfg.Mode, DP: cfg.Epsilon > 0}
	var ledger *dp.Ledger
	var plan *dp.DistributedNoise
	next := 1
	w := model.Init(0)
	if cfg.Epsilon > 0 {
		sum.Level, sum.Delta = cfg.Level, cfg.Delta
		ledger, err = c.openLedger()
		if err != nil {
			return nil, err
		}
		defer ledger.Close()
		c.ledger = ledger
		sum.Ledger = filepath.Join(cfg.State, "coordinator-ledger.jsonl")
		sum.LedgerKey = base64.StdEncoding.EncodeToString(ledger.PublicKey())
		entries, err := dp.ReadLedger(sum.Ledger)
		if err != nil {
			return nil, err
		}
		if last := lastCharge(entries); last.Kind == "charge" {
			next = last.Round + 1
			// Resume from the newest checkpoint at or before the last
			// charge. A round charged but not checkpointed has no file
			// (its result was lost with a crash) and is passed over; a
			// file that is there but cannot be read stops the run, since
			// going back past it would silently drop charged rounds of
			// training (older checkpoints may have been pruned).
			from := 0
			for r := last.Round; r >= 1; r-- {
				m, err := readCheckpoint(cfg.State, r)
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err == nil && len(m) != d {
					err = fmt.Errorf("%d parameters, the model %d", len(m), d)
				}
				if err != nil {
					return nil, fmt.Errorf("protocol: resuming after round %d: checkpoint %s is damaged (%v): restore it from a backup, or remove it to resume from an earlier checkpoint", last.Round, checkpointPath(cfg.State, r), err)
				}
				w, from = m, r
				break
			}
			if from == 0 {
				c.log.Warn("resuming from the initial model: no checkpoint at or before the last charged round", "last_charged", last.Round)
			}
			c.log.Info("resuming", "next_round", next, "from_checkpoint", from, "spent", ledger.Spent())
		}
		c.metrics.ledger("coordinator", ledger.Spent(), cfg.Epsilon)
	}
	c.event(Event{Event: "run_started", Rounds: cfg.Rounds, Sites: c.Connected(), Mode: string(cfg.Mode), Level: string(cfg.Level),
		Epsilon: floatp(cfg.Epsilon), Delta: cfg.Delta, Round: intp(next)})
	c.metrics.setRound(0, "statistics")

	if cfg.Mode == HE {
		if c.crs, err = c.heSetup(ctx); err != nil {
			return nil, err
		}
	}

	// Federated standardization and record count (once; kept across
	// restarts): the statistics release, noised and charged as round 0,
	// or public constants.
	statDim := cfg.Features
	if regression {
		// The label's statistics go with the features' (as a last
		// column): sites train on a standardized label.
		statDim++
	}
	if !cfg.PublicStatistics || len(cfg.Ranges) > 0 {
		if err := checkRanges(cfg.Ranges, statDim); err != nil {
			return nil, err
		}
	}
	var split dp.Split
	if cfg.Epsilon > 0 {
		share := cfg.StatisticsShare
		if cfg.PublicStatistics {
			share = 0
		}
		if split, err = dp.SplitCalibrate(cfg.Epsilon, cfg.Delta, cfg.PlanRounds, share); err != nil {
			return nil, err
		}
		sum.StatisticsShare = split.Share
	}
	st, err := c.statistics(ctx, statDim, regression, split.StatisticsMultiplier, ledger)
	if err != nil {
		return nil, err
	}
	sum.Statistics = statisticsText(cfg, split)

	// The coordinator's test set, standardized as the sites' data.
	var test *fl.Dataset
	if cfg.Test != nil {
		test = (&fl.Standardizer{Mean: st.Mean, Scale: st.Scale}).Apply(cfg.Test)
		if regression {
			test = fl.ScaleLabels(test, st.LabelMean, st.labelScale())
		}
	}
	evaluate := func(w []float64) (fl.Metrics, error) {
		if test == nil {
			return fl.Metrics{}, nil
		}
		m, err := fl.Evaluate(model, w, test)
		m.RMSE *= st.labelScale()
		return m, err
	}
	// Tail averaging over the published models from AverageFrom on,
	// including those published before a restart.
	avg := make([]float64, d)
	averaged := 0
	average := func(w []float64) {
		averaged++
		for k := range avg {
			avg[k] += (w[k] - avg[k]) / float64(averaged)
		}
	}
	if cfg.AverageFrom > 0 {
		for r := cfg.AverageFrom; r < next; r++ {
			if m, err := readCheckpoint(cfg.State, r); err == nil && len(m) == d {
				average(m)
			}
		}
	}
	wMean, wScale := st.wireStandardization(regression)
	sum.SetupSeconds = time.Since(began).Seconds()

	if cfg.Epsilon > 0 {
		// A site's vector is at most Clip (client level) or Clip times its
		// records, bounded by the noised or public count with a margin
		// (statistics): a bound too small risks wraparound, which costs
		// accuracy, not privacy.
		norm := cfg.Clip * math.Max(st.rowsBound(), 1)
		if cfg.Level == dp.ClientLevel {
			norm = cfg.Clip
		}
		dc := dp.DistributedConfig{Clip: cfg.Clip, ClientNorm: norm,
			Clients: len(cfg.Roster.Sites), Threshold: cfg.MinCohort, Colluders: cfg.Colluders, Dim: d, Bits: cfg.Bits}
		if cfg.Mode == HE {
			dc.Gamma = math.Exp2(-24) // noise on the grid before CKKS encoding
		}
		// The training rounds take what the statistics release left: its
		// share normally, less if a retry of the release was charged again.
		z, err := c.trainingMultiplier(sum.Ledger, cfg.PlanRounds)
		if err != nil {
			return nil, err
		}
		plan, err = dp.PlanDistributed(z, dc)
		if err != nil {
			return nil, err
		}
		sum.NoiseMultiplier, sum.SiteSigma = plan.NoiseMultiplier, plan.LocalSigma
	}
	var retry *retrier
	var roundBegan time.Time
	for r := next; r <= cfg.Rounds; r++ {
		res := RoundResult{Round: r}
		if retry == nil || retry.round != r {
			if cfg.BeforeRound != nil {
				cfg.BeforeRound(r)
			}
			retry = c.newRetry(r)
			roundBegan = time.Now()
		}
		c.metrics.setRound(r, "gathering sites")
		sess, err := retry.cohort(ctx)
		if err != nil {
			return nil, err
		}
		sid, err := c.sessionID(r)
		if err != nil {
			return nil, err
		}
		start := &wire.RoundStart{Round: sid, Kind: wire.RoundStart_TRAIN, Model: w, Length: uint32(d), Bits: uint32(cfg.Bits),
			Clip: cfg.Clip, MinCohort: uint32(cfg.MinCohort), Colluders: uint32(cfg.Colluders), ModelName: cfg.Model,
			Mean: wMean, Scale: wScale, Sites: uint32(len(cfg.Roster.Sites)), Delta: cfg.Delta, Mode: string(cfg.Mode), Gamma: math.Exp2(-16),
			Level: string(cfg.Level)}
		var charge func(int) (int64, error)
		var chargedAt int64 // this attempt's charge in the ledger, or 0
		if plan != nil {
			start.Gamma, start.SiteSigma, start.Bits = plan.Gamma, plan.LocalSigma, uint32(cfg.Bits)
			ch, err := dp.PlanCharge("federation", r, cfg.Level, dp.NoisePlan{Release: dp.TrainingRelease,
				Threshold: cfg.MinCohort, Colluders: cfg.Colluders, MinCohort: cfg.MinCohort, Clients: len(cfg.Roster.Sites),
				Gamma: plan.Gamma, Dim: d, RingBits: cfg.Bits, SiteSigma: plan.LocalSigma, Clip: cfg.Clip})
			if err != nil {
				return nil, err
			}
			if _, err := ledger.Preview(ch); err != nil {
				res.Status, res.Epsilon = "budget-refused", ledger.Spent()
				c.metrics.rounds.WithLabelValues("skipped").Inc()
				c.event(Event{Event: "round_skipped", Round: intp(r), Status: res.Status, Epsilon: floatp(res.Epsilon), Reason: err.Error()})
				sum.Rounds = append(sum.Rounds, res)
				if cfg.Progress != nil {
					cfg.Progress(res)
				}
				c.log.Info("round refused by the budget", "round", r, "err", err)
				break
			}
			charge = c.chargeSession(ledger, ch, start, "charge", r, &chargedAt)
		}
		cohort := make([]int, len(sess))
		for i, s := range sess {
			cohort[i] = s.site
		}
		c.metrics.rounds.WithLabelValues("started").Inc()
		c.event(Event{Event: "round_started", Round: intp(r), Attempt: retry.failures + 1, Sites: cohort})
		agg, n, bl, err := c.secureSum(ctx, sess, start, charge)
		c.metrics.ledger("coordinator", spent(ledger), cfg.Epsilon)
		if len(bl.sites) > 0 || len(bl.notes) > 0 {
			c.log.Info("sites left the round", "round", r, "sites", blame(bl.sites), "refusals", blame(bl.notes))
		}
		if err != nil && chargedAt > 0 && !errors.Is(err, errCrashed) {
			if err := c.markOutcome(ledger, chargedAt, r, dp.Unopened); err != nil {
				return nil, err
			}
		}
		if err != nil {
			res.Status, res.Participants, res.Seconds = "failed", n, time.Since(roundBegan).Seconds()
			c.log.Warn("round failed", "round", r, "err", err)
			if errors.Is(err, ErrCohort) {
				res.Status = "below-cohort"
			}
			c.metrics.rounds.WithLabelValues("failed").Inc()
			c.event(Event{Event: "round_failed", Round: intp(r), Status: res.Status, Participants: n, Epsilon: floatp(spent(ledger)), Reason: err.Error()})
			sum.Rounds = append(sum.Rounds, res)
			if cfg.Progress != nil {
				cfg.Progress(res)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, he.ErrOutOfRange) {
				// A site submitted a malformed ciphertext. The result was
				// withheld, but each refused round tells that site one bit
				// about the decryption key: stop.
				return nil, fmt.Errorf("protocol: round %d: a decrypted sum was out of the range honest updates produce, so a site submitted a malformed ciphertext or a decryptor a wrong decryption share; the run stops (each such round could leak a bit of the decryption key): %w", r, err)
			}
			if err := retry.failed(ctx, bl, err); err != nil {
				return nil, err
			}
			if ledger != nil && ledgerHas(sum.Ledger, r) {
				continue // charged, result lost: the round is spent
			}
			r-- // nothing was charged: try the round again
			continue
		}
		for k := range w {
			if cfg.Level == dp.ClientLevel {
				w[k] += agg[k] / float64(n)
			} else {
				w[k] -= cfg.LearningRate / st.Rows * agg[k]
			}
		}
		if chargedAt > 0 {
			if err := c.markOutcome(ledger, chargedAt, r, dp.Opened); err != nil {
				return nil, err
			}
		}
		if err := c.cfg.hooks.crashAt("checkpoint", r); err != nil {
			return nil, err
		}
		if err := checkpoint(cfg.State, r, w, spent(ledger), !cfg.NoSync); err != nil {
			return nil, err
		}
		c.event(Event{Event: "checkpoint_written", Round: intp(r), File: checkpointPath(cfg.State, r), Epsilon: floatp(spent(ledger))})
		c.pruneCheckpoints(r)
		if err := c.cfg.hooks.crashAt("publish", r); err != nil {
			return nil, err
		}
		res.Status, res.Participants, res.Epsilon = "ok", n, spent(ledger)
		res.Survivors, res.Sum = bl.survivors, agg
		for _, s := range sess {
			s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_End{End: &wire.RoundEnd{Round: start.Round, Status: "ok", Model: w, Epsilon: res.Epsilon}}})
		}
		if cfg.AverageFrom > 0 && r >= cfg.AverageFrom {
			average(w)
		}
		if res.Test, err = evaluate(w); err != nil {
			return nil, err
		}
		res.Seconds = time.Since(roundBegan).Seconds()
		sum.Rounds = append(sum.Rounds, res)
		c.metrics.rounds.WithLabelValues("opened").Inc()
		c.event(Event{Event: "round_opened", Round: intp(r), Participants: n, Epsilon: floatp(res.Epsilon)})
		c.log.Info("round done", "round", r, "participants", n, "epsilon", res.Epsilon)
		if cfg.Progress != nil {
			cfg.Progress(res)
		}
	}
	sum.Model, sum.Epsilon = w, spent(ledger)
	if ledger != nil {
		if err := privacyBreakdown(sum); err != nil {
			return nil, err
		}
	}
	if averaged > 0 {
		sum.Model, sum.Averaged = avg, averaged
	}
	if sum.Test, err = evaluate(sum.Model); err != nil {
		return nil, err
	}
	sum.Seconds = time.Since(began).Seconds()
	c.witnessEnd(ctx)
	if c.witnessing() {
		if sum.Witnesses, err = WitnessCheckpoints(cfg.State, cfg.Roster); err != nil {
			return nil, err
		}
	}
	for _, s := range c.connected() {
		s.send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Bye{Bye: &wire.Goodbye{Reason: "training finished"}}})
	}
	return sum, nil
}

func ones(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// retrier runs the attempts of one round. A retry leaves out every site
// that failed an earlier attempt of the round (refused, sent a bad or
// forged message, or went silent), so one faulty or malicious site cannot
// make the honest sites pay for the same round again and again; after
// RoundAttempts attempts that reached the masked inputs (the point where
// sites pay), or maxFailures failures of any kind, the run stops with an
// error that names the sites responsible.
type retrier struct {
	c        *Coordinator
	round    int
	paid     int // attempts that reached the masked inputs
	failures int
	excluded map[int]string
	// costs marks a statistics round that the sites pay for (with DP):
	// its attempts count against RoundAttempts like a training round's.
	costs bool
	// pinned, for the statistics round, is the survivor set that sites
	// were asked to sign: each site signs one statistics survivor set,
	// ever (one release, whose noise must not be averaged down over
	// sets), so a retry must gather exactly it.
	pinned []int
}

func (c *Coordinator) newRetry(r int) *retrier {
	return &retrier{c: c, round: r, excluded: map[int]string{}}
}

// cohort waits for the sites of the next attempt: those connected, less
// the excluded ones.
func (t *retrier) cohort(ctx context.Context) ([]*session, error) {
	if t.pinned != nil {
		return t.gather(ctx)
	}
	out := t.excluded
	if t.round != 0 && len(t.c.banned) > 0 {
		out = maps.Clone(t.excluded)
		for site, why := range t.c.banned {
			if _, ok := out[site]; !ok {
				out[site] = why
			}
		}
	}
	left := 0
	for i := range t.c.cfg.Roster.Sites {
		if _, ok := out[i+1]; !ok {
			left++
		}
	}
	if left < t.c.cfg.MinCohort {
		return nil, fmt.Errorf("protocol: %s cannot reach the minimum cohort of %d without the sites that failed it: %s",
			t.name(), t.c.cfg.MinCohort, blame(out))
	}
	want := t.c.cfg.MinCohort
	for {
		sess, err := t.c.waitFor(ctx, want)
		if err != nil {
			return nil, err
		}
		var cohort []*session
		for _, s := range sess {
			if _, ok := out[s.site]; !ok {
				cohort = append(cohort, s)
			}
		}
		if len(cohort) >= t.c.cfg.MinCohort {
			return cohort, nil
		}
		if len(sess) == len(t.c.cfg.Roster.Sites) {
			return nil, fmt.Errorf("protocol: %s cannot reach the minimum cohort of %d without the sites that failed it: %s",
				t.name(), t.c.cfg.MinCohort, blame(out))
		}
		want = len(sess) + 1 // wait for more sites
	}
}

// gather waits until every pinned site is connected and returns them.
func (t *retrier) gather(ctx context.Context) ([]*session, error) {
	report := time.Now()
	for {
		var out []*session
		var missing []int
		for _, site := range t.pinned {
			s := t.c.sessionOf(site)
			if s == nil {
				missing = append(missing, site)
				continue
			}
			out = append(out, s)
		}
		if len(missing) == 0 {
			return out, nil
		}
		if now := time.Now(); !now.Before(report) {
			t.c.log.Warn("the statistics can only be opened over the survivor set the sites signed; waiting for its sites",
				"survivors", fmt.Sprint(t.pinned), "missing", fmt.Sprint(missing))
			report = now.Add(5 * time.Second)
		}
		wait := time.NewTimer(time.Until(report))
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, ctx.Err()
		case <-t.c.changed:
		case <-wait.C:
		}
		wait.Stop()
	}
}

func (t *retrier) name() string {
	if t.round == 0 {
		return "the statistics round"
	}
	return fmt.Sprintf("round %d", t.round)
}

// failed records a failed attempt and waits before the next, or returns
// the error that ends the run.
func (t *retrier) failed(ctx context.Context, a *attempt, err error) error {
	t.failures++
	if t.round == 0 && a.signing != nil && t.pinned == nil {
		// Once sites have been asked to sign a statistics survivor set,
		// only that set can ever be opened.
		t.pinned = a.signing
	}
	if a.masked && (t.round != 0 || t.costs) {
		t.paid++
	}
	for _, m := range []map[int]string{a.sites, a.retryOnly} {
		for site, why := range m {
			if _, ok := t.excluded[site]; !ok {
				t.excluded[site] = why
			}
		}
	}
	if t.round != 0 && a.masked {
		// A site that left a failed attempt after the sites had paid for it
		// (withheld its signature or its shares, or dropped) is left out of
		// the rest of the run: otherwise it could make the honest sites pay
		// for a round that never opens in every round it joins. Restarting
		// the coordinator admits it again.
		for _, site := range a.paid {
			if _, ok := t.c.banned[site]; !ok {
				why := fmt.Sprintf("round %d failed after the sites paid for it: %s", t.round, a.sites[site])
				t.c.banned[site] = why
				t.c.misbehaved(site, why+"; left out of the rest of the run")
			}
		}
	}
	switch {
	case t.paid >= t.c.cfg.RoundAttempts:
		return fmt.Errorf("protocol: %s failed %d times after the sites paid for it; sites responsible: %s; last error: %w",
			t.name(), t.paid, orNone(blame(t.excluded)), err)
	case t.failures > maxFailures:
		return fmt.Errorf("protocol: %s failed %d times; sites responsible: %s; last error: %w", t.name(), t.failures, orNone(blame(t.excluded)), err)
	}
	t.c.log.Warn("retrying", "round", t.round, "attempt", t.failures+1, "leaving_out", blame(a.sites), "err", err)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(min(t.c.cfg.PhaseTimeout, time.Second)):
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none identified"
	}
	return s
}

// maxFailures bounds consecutive failed rounds before the run stops.
const maxFailures = 20

// ErrCohort is returned when fewer sites than the minimum cohort remain.
var ErrCohort = errors.New("protocol: fewer sites than the minimum cohort")

func spent(l *dp.Ledger) float64 {
	if l == nil {
		return 0
	}
	return l.Spent()
}

// chargeSession returns secureSum's charge callback for the session of
// start: it records ch with the survivors and the session in ledger,
// between the crash points crash and crash+"d", and sets *at to the
// charge's entry as soon as it is on disk, even if an error follows.
func (c *Coordinator) chargeSession(ledger *dp.Ledger, ch dp.Charge, start *wire.RoundStart, crash string, round int, at *int64) func(int) (int64, error) {
	return func(survivors int) (int64, error) {
		ch.Survivors, ch.Session = survivors, start.Round
		if err := c.cfg.hooks.crashAt(crash, round); err != nil {
			return 0, err
		}
		e, err := ledger.Charge(ch)
		*at = e.Seq
		if err != nil {
			return 0, err
		}
		return e.Seq, c.cfg.hooks.crashAt(crash+"d", round)
	}
}

// markOutcome records in the ledger what became of round r's charge at
// entry seq: opened once its sum is decoded, unopened when the round
// fails after the charge.
func (c *Coordinator) markOutcome(l *dp.Ledger, seq int64, r int, o dp.Outcome) error {
	if err := c.cfg.hooks.crashAt("mark", r); err != nil {
		return err
	}
	if _, err := l.Mark(seq, o); err != nil {
		return err
	}
	return c.cfg.hooks.crashAt("marked", r)
}

// lastCharge returns the ledger's last charge entry (outcome marks follow
// charges), or the open entry if there is none.
func lastCharge(es []dp.Entry) dp.Entry {
	for i := len(es) - 1; i > 0; i-- {
		if es[i].Kind == "charge" {
			return es[i]
		}
	}
	return es[0]
}

func ledgerHas(path string, round int) bool {
	es, err := dp.ReadLedger(path)
	if err != nil {
		return true // be conservative: treat as charged
	}
	for _, e := range es {
		if e.Kind == "charge" && e.Round == round {
			return true
		}
	}
	return false
}

func (c *Coordinator) openLedger() (*dp.Ledger, error) {
	return openOrCreateLedger(c.cfg.State, "coordinator-ledger.jsonl", c.cfg.LedgerKey, c.cfg.Epsilon, c.cfg.Delta, c.cfg.Passphrase, c.checkRosterLedgerKey)
}

// noPassphraseWarning is logged once at the start of a site or coordinator
// that has no passphrase.
const noPassphraseWarning = "NO PASSPHRASE: private keys and state are stored UNENCRYPTED; give FL_SECURE_PASSPHRASE or --passphrase-file"

// openOrCreateLedger opens dir/name with the key ledgerSigningKey finds
// (in keyFile, a kit, or dir/ledger-key.pem without one; encrypted with
// pass if it is set), or creates the ledger. A key that exists but cannot
// be read is an error, never replaced. check, if set, vets the public key
// before anything is written.
//
// Nothing in dir says which key to audit the ledger with: whoever can
// write dir could replace the ledger and any key beside it together. The
// key to audit with is the roster's (Roster.CoordinatorLedgerKey,
// Roster.SiteLedgerKey); a ledger.pub left in dir by an earlier version is
// removed, so that no audit takes its key from there.
func openOrCreateLedger(dir, name, keyFile string, cap, delta float64, pass atrest.Passphrase, check func(ed25519.PublicKey) error) (*dp.Ledger, error) {
	path := filepath.Join(dir, name)
	_, statErr := os.Stat(path)
	key, err := ledgerSigningKey(dir, name, keyFile, pass)
	if err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	if check != nil {
		if err := check(pub); err != nil {
			return nil, err
		}
	}
	if err := os.Remove(filepath.Join(dir, staleLedgerPub)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("protocol: %w (it is no key to audit the ledger with: the roster names that key)", err)
	}
	if statErr == nil {
		return dp.OpenLedger(path, key)
	}
	return dp.CreateLedger(path, key, dp.LedgerOptions{Accountant: dp.RDP, Relation: dp.AddRemove, Delta: delta, Cap: cap})
}

// staleLedgerPub is the ledger public key earlier versions wrote beside
// the ledger, in the state directory.
const staleLedgerPub = "ledger.pub"

// silence says why site gave no answer in a phase: what it said when it
// refused the federation's plan, if it did (it may have done so as the
// round began), else what.
func (c *Coordinator) silence(site int, what string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if why, ok := c.refusedPlan[site]; ok {
		return "refused the federation's plan: " + why
	}
	return what
}

// trainingPhase gives the next collect TrainTimeout if start begins a
// training round: the sites answer its first phase only once they have
// computed their updates.
func (c *Coordinator) trainingPhase(start *wire.RoundStart) {
	if start.Kind == wire.RoundStart_TRAIN && c.cfg.TrainTimeout > 0 {
		c.phaseWait.Store(int64(c.cfg.TrainTimeout))
	}
}

// collect gathers one message per site from sess until all have answered
// or the phase times out; silent sites are dropouts. A site whose session
// has ended (disconnected, replaced by a newer session, or closed for
// flooding) is a dropout at once: the phase does not wait for it. Messages
// are keyed by their session's site, the one its certificate names.
func (c *Coordinator) collect(ctx context.Context, sess []*session, want func(*wire.SiteMessage) bool) map[int]*wire.SiteMessage {
	out := map[int]*wire.SiteMessage{}
	wait := c.cfg.PhaseTimeout
	if d := time.Duration(c.phaseWait.Swap(0)); d > 0 {
		wait = d
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	phase, _ := c.phaseName.Swap("").(string)
	c.metrics.setPhase(phase)
	began := time.Now()
	timedOut := false
	defer func() {
		if phase == "" {
			phase = c.phaseOf(out)
		}
		c.metrics.observePhase(phase, time.Since(began), timedOut)
		if timedOut {
			var silent []int
			for _, s := range sess {
				if _, ok := out[s.site]; !ok {
					silent = append(silent, s.site)
				}
			}
			c.log.Warn("phase timed out", "phase", phase, "silent", fmt.Sprint(silent), "after", wait)
			c.event(Event{Event: "phase_timeout", Round: intp(c.metrics.currentRound()), Phase: phase, Sites: silent})
		}
	}()
	type got struct {
		site int
		m    *wire.SiteMessage // nil: the site has left
	}
	ch := make(chan got, len(sess)) // one answer per site at most
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range sess {
		wg.Add(1)
		go func(s *session) {
			defer wg.Done()
			// answer reports whether m ends the site's part in the phase.
			answer := func(m *wire.SiteMessage) bool {
				s.take(m)
				if cs := m.GetCosigned(); cs != nil {
					c.cosigned(s.site, cs)
				}
				switch {
				case s.flooded.Load():
					ch <- got{site: s.site}
					return true
				case want(m), m.GetRefuse() != nil:
					ch <- got{s.site, m}
					return true
				case m.GetJoin() != nil, m.GetCosigned() != nil:
					return false
				}
				c.log.Warn("unexpected message ignored", "site", s.site, "msg", fmt.Sprintf("%T", m.Body))
				return false
			}
			for {
				select {
				case m := <-s.inbox:
					if answer(m) {
						return
					}
				case <-s.closed:
					// What the site sent before its stream ended counts.
					for {
						select {
						case m := <-s.inbox:
							if answer(m) {
								return
							}
						default:
							ch <- got{site: s.site}
							return
						}
					}
				case <-s.done:
					ch <- got{site: s.site}
					return
				case <-stop:
					return
				}
			}
		}(s)
	}
	defer wg.Wait()
	defer close(stop)
	for range sess {
		select {
		case g := <-ch:
			if g.m != nil {
				out[g.site] = g.m
			}
		case <-deadline.C:
			timedOut = true
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// phaseOf names the phase whose answers are got, for metrics and events.
func (c *Coordinator) phaseOf(got map[int]*wire.SiteMessage) string {
	for _, m := range got {
		switch {
		case m.GetEngine() != nil && c.cfg.Mode == HE:
			return "he phase " + strconv.Itoa(int(m.GetEngine().Phase))
		case m.GetEngine() != nil:
			if l, ok := phaseLabel[m.GetEngine().Phase]; ok {
				return l
			}
		case m.GetCosigned() != nil:
			return "cosign"
		case m.GetPlain() != nil:
			return "plain"
		}
	}
	return "other"
}

func engineFor(round uint64, phase uint32) func(*wire.SiteMessage) bool {
	return func(m *wire.SiteMessage) bool {
		e := m.GetEngine()
		return e != nil && e.Round == round && e.Phase == phase
	}
}

// accuse records that site accuser could not open a share that site
// accused sealed for it, and reports whether accused is now left out of the
// rest of the run. One accusation proves nothing (the accuser may lie, or
// be the one at fault), but more accusers than the colluders assumed, and
// at least two, cannot all be lying: the accused is then left out.
func (c *Coordinator) accuse(accused, accuser, round int) bool {
	if _, ok := c.banned[accused]; ok {
		return true
	}
	if c.accusations == nil {
		c.accusations = map[int]map[int]bool{}
	}
	if c.accusations[accused] == nil {
		c.accusations[accused] = map[int]bool{}
	}
	by := c.accusations[accused]
	by[accuser] = true
	if len(by) <= max(c.cfg.Colluders, 1) {
		return false
	}
	why := fmt.Sprintf("round %d: sites %v could not open the shares it sealed for them", round, slices.Sorted(maps.Keys(by)))
	c.banned[accused] = why
	c.misbehaved(accused, why+"; left out of the rest of the run")
	return true
}

// attempt records what one session of a round cost and who left it: per
// site, why the session went on without it (a refusal with its reason, a
// dropout in a named phase, or a message that failed its checks), and
// whether masked inputs were requested, after which the sites have paid
// for the attempt. A retry of the round leaves these sites out, and a round
// that keeps failing ends the run with an error that names them.
type attempt struct {
	sites  map[int]string
	masked bool
	// paid lists the sites that left after masked inputs were requested,
	// when the sites had paid for the attempt.
	paid []int
	// signing is the survivor set (sites) that was sent for signatures.
	signing []int
	// notes says why other sites left, without holding it against them.
	notes map[int]string
	// retryOnly lists sites to leave out of a retry only (unconfirmed).
	retryOnly map[int]string
	// survivors are the sites whose input is in the opened sum, in order.
	survivors []int
}

func newAttempt() *attempt {
	return &attempt{sites: map[int]string{}, notes: map[int]string{}, retryOnly: map[int]string{}}
}

// unconfirmed records a site to leave out of a retry for a reason that is
// no fault of its own as far as the coordinator can tell (an unconfirmed
// accusation, either side of it); it never leaves a site out of the run,
// and a fault the site commits later in the attempt is recorded as usual.
func (a *attempt) unconfirmed(site int, format string, args ...any) {
	if _, ok := a.retryOnly[site]; !ok {
		a.retryOnly[site] = fmt.Sprintf(format, args...)
	}
}

// note records why a site left a session without leaving it out of a
// retry.
func (a *attempt) note(site int, format string, args ...any) {
	if _, ok := a.notes[site]; !ok {
		a.notes[site] = fmt.Sprintf(format, args...)
	}
}

func (a *attempt) add(site int, format string, args ...any) {
	if _, ok := a.sites[site]; !ok {
		a.sites[site] = fmt.Sprintf(format, args...)
		if a.masked {
			a.paid = append(a.paid, site)
		}
	}
}

// blame lists sites and reasons in site order.
func blame(sites map[int]string) string {
	ids := make([]int, 0, len(sites))
	for s := range sites {
		ids = append(ids, s)
	}
	sort.Ints(ids)
	var out []string
	for _, s := range ids {
		out = append(out, fmt.Sprintf("site %d (%s)", s, sites[s]))
	}
	return strings.Join(out, ", ")
}

var phaseLabel = map[uint32]string{phaseAdvert: "advertise keys", phaseShares: "share keys", phaseMasked: "masked input",
	phaseConsistency: "consistency check", phaseUnmask: "unmasking"}

// secureSum runs one secagg (or plain) session among the connected sites
// and returns the unmasked sum, the number of contributors and, for every
// site that left the session, why. charge, if set, is called with the
// number of survivors after the masked inputs are in and before anything
// is unmasked, and returns the charge's sequence number in the ledger:
// privacy is charged before release, and the sites cosign a checkpoint
// holding the charge before they release what unmasks the sum
// (witnessCharge).
func (c *Coordinator) secureSum(ctx context.Context, sess []*session, start *wire.RoundStart, charge func(int) (int64, error)) ([]float64, int, *attempt, error) {
	bl := newAttempt()
	members := make([]uint32, len(sess))
	for i, s := range sess {
		members[i] = uint32(s.site)
	}
	start.Sites = uint32(len(c.cfg.Roster.Sites))
	start.MinCohort, start.Colluders = uint32(c.cfg.MinCohort), uint32(c.cfg.Colluders)
	if c.cfg.Mode == HE {
		return c.heSum(ctx, sess, start, charge)
	}
	start.Members = members
	// t > n/2 (two disjoint groups can never each recover a secret) and
	// t > c (the colluders alone recover nothing).
	start.Threshold = uint32(max(len(sess)/2+1, c.cfg.Colluders+1))
	context := terms(start) // start is final: every site hashes what it receives
	for _, s := range sess {
		c.sendStart(s, start)
	}
	round := start.Round
	tr := roundOf(round)
	c.trainingPhase(start)
	// A round that fails before its first collect must not leave the
	// train timeout to whatever collect comes next.
	defer c.phaseWait.Store(0)
	if c.cfg.Mode == Plain {
		c.phaseName.Store("plain")
		got := c.collect(ctx, sess, func(m *wire.SiteMessage) bool {
			p := m.GetPlain()
			return p != nil && p.Round == round && len(p.Vector) == int(start.Length)
		})
		out := make([]float64, start.Length)
		n := 0
		for _, s := range sess {
			m, ok := got[s.site]
			switch {
			case !ok:
				bl.add(s.site, "%s", c.silence(s.site, "no answer"))
			case m.GetRefuse() != nil:
				bl.add(s.site, "refused: %s", m.GetRefuse().Reason)
				c.log.Info("site refused", "site", s.site, "round", tr, "reason", m.GetRefuse().Reason)
				c.event(Event{Event: "site_refused", Site: s.site, Round: intp(tr), Phase: "plain", Reason: truncate(m.GetRefuse().Reason, 500)})
			default:
				n++
				bl.survivors = append(bl.survivors, s.site)
				for i, x := range m.GetPlain().Vector {
					out[i] += x
				}
			}
		}
		if n < c.cfg.MinCohort {
			return nil, n, bl, ErrCohort
		}
		return out, n, bl, nil
	}
	ids := c.cfg.Roster.identities()
	pubs := make([]ed25519.PublicKey, len(sess))
	for i, s := range sess {
		pubs[i] = ids[s.site-1]
	}
	roster, err := secagg.NewRoster(pubs)
	if err != nil {
		return nil, 0, bl, err
	}
	p := secagg.Params{Round: round, Clients: len(sess), Threshold: int(start.Threshold), Degree: len(sess) - 1,
		Corrupt: c.cfg.Colluders, MinSurvivors: c.cfg.MinCohort, Length: int(start.Length), Bits: int(start.Bits), Context: context}
	if err := p.Validate(); err != nil {
		return nil, 0, bl, err
	}
	srv, err := secagg.NewServer(p, roster)
	if err != nil {
		return nil, 0, bl, err
	}
	client := map[int]uint32{} // site → secagg client id
	bySite := map[int]*session{}
	for i, s := range sess {
		client[s.site] = uint32(i + 1)
		bySite[s.site] = s
	}
	sendEngine := func(site int, phase uint32, b []byte) {
		bySite[site].send(&wire.CoordinatorMessage{Body: &wire.CoordinatorMessage_Engine{Engine: &wire.Engine{Round: round, Phase: phase, Payload: b}}})
	}
	// Each phase waits only for the sites still in the round.
	active := sess
	keep := func(sites []int) {
		var a []*session
		for _, site := range sites {
			a = append(a, bySite[site])
		}
		active = a
	}
	var accusations [][2]int // accuser, accused
	handle := func(phase uint32, f func(b []byte) error) []int {
		c.phaseName.Store(phaseLabel[phase])
		got := c.collect(ctx, active, engineFor(round, phase))
		var ok []int
		for _, s := range active {
			m, answered := got[s.site]
			if !answered {
				bl.add(s.site, "%s", c.silence(s.site, "no answer in phase "+phaseLabel[phase]))
				continue
			}
			if r := m.GetRefuse(); r != nil {
				c.log.Info("site refused", "site", s.site, "round", tr, "reason", r.Reason)
				c.event(Event{Event: "site_refused", Site: s.site, Round: intp(tr), Phase: phaseLabel[phase], Reason: truncate(r.Reason, 500)})
				switch a, ok := accused(r.Reason); {
				case phase == phaseAdvert:
					// Refused at the start: it would refuse a retry too.
					bl.add(s.site, "refused: %s", r.Reason)
				case phase == phaseMasked && ok && a != s.site && client[a] != 0:
					// It could not open a share that site a sealed for it,
					// and paid nothing. Settled after the phase (accusations).
					accusations = append(accusations, [2]int{s.site, a})
					bl.note(s.site, "refused in phase %s: %s", phaseLabel[phase], r.Reason)
				case phase == phaseMasked:
					// Before it paid: a retry may include it.
					bl.note(s.site, "refused in phase %s: %s", phaseLabel[phase], r.Reason)
				default:
					// After the sites paid: whatever its reason, the round
					// cannot open without it. An honest coordinator checks
					// beforehand every condition it can (quorum, share
					// holders, its own floors), so such a refusal comes from
					// a site's stricter private floor or from a site that
					// withholds on purpose; either way it would fail the
					// round again.
					bl.add(s.site, "refused in phase %s after the sites paid: %s", phaseLabel[phase], r.Reason)
				}
				continue
			}
			b := m.GetEngine().Payload
			// Sender binding: a message counts only in the name of the site
			// whose certificate carried it.
			if mr, sender, err := secagg.ClaimedSender(b); err != nil {
				bl.add(s.site, "malformed message in phase %s", phaseLabel[phase])
				c.misbehaved(s.site, fmt.Sprintf("round %d, phase %s: %v", tr, phaseLabel[phase], err))
				continue
			} else if sender != client[s.site] || mr != round {
				bl.add(s.site, "sent a message in another's name")
				c.misbehaved(s.site, fmt.Sprintf("round %d, phase %s: message claims client %d of %s; this site is client %d",
					tr, phaseLabel[phase], sender, sessionName(mr), client[s.site]))
				continue
			}
			if err := f(b); err != nil {
				bl.add(s.site, "bad message in phase %s", phaseLabel[phase])
				c.log.Warn("bad message", "site", s.site, "round", tr, "phase", phaseLabel[phase], "err", err)
				continue
			}
			ok = append(ok, s.site)
		}
		sort.Ints(ok)
		return ok
	}
	// Phase 0: adverts.
	adv := handle(phaseAdvert, func(b []byte) error {
		var m secagg.Advert
		if err := m.UnmarshalBinary(b); err != nil {
			return err
		}
		return srv.HandleAdvert(&m)
	})
	if len(adv) < c.cfg.MinCohort {
		return nil, len(adv), bl, fmt.Errorf("%w: %d adverts", ErrCohort, len(adv))
	}
	list, err := srv.AdvertList()
	if err != nil {
		return nil, len(adv), bl, err
	}
	lb, _ := list.MarshalBinary()
	keep(adv)
	for _, site := range adv {
		sendEngine(site, phaseAdvert, lb)
	}
	// Phase 1: shares.
	sh := handle(phaseShares, func(b []byte) error {
		var m secagg.Shares
		if err := m.UnmarshalBinary(b); err != nil {
			return err
		}
		return srv.HandleShares(&m)
	})
	if len(sh) < c.cfg.MinCohort {
		return nil, len(sh), bl, fmt.Errorf("%w: %d share messages", ErrCohort, len(sh))
	}
	fwd, err := srv.ForwardedShares()
	if err != nil {
		return nil, len(sh), bl, err
	}
	var fwdTo []int
	for _, site := range sh {
		if _, ok := fwd[client[site]]; ok {
			fwdTo = append(fwdTo, site)
		} else {
			bl.add(site, "received too few shares")
		}
	}
	// Sites pay for a round when they mask their input: ask for masked
	// inputs only if the round can still reach the minimum cohort.
	if len(fwdTo) < c.cfg.MinCohort {
		return nil, len(fwdTo), bl, fmt.Errorf("%w: %d sites hold enough shares", ErrCohort, len(fwdTo))
	}
	bl.masked = true
	for _, site := range fwdTo {
		b, _ := fwd[client[site]].MarshalBinary()
		sendEngine(site, phaseShares, b)
	}
	keep(fwdTo)
	// Phase 2: masked inputs.
	handle(phaseMasked, func(b []byte) error { return srv.HandleEncodedMaskedInput(b) })
	// Accusations cannot be verified (shares are sealed pairwise): the
	// accused and its accusers are left out of a retry, unless enough sites
	// accuse it that they cannot all be lying (accuse), which leaves it out
	// of the rest of the run and keeps its accusers.
	for _, acc := range accusations {
		if !c.accuse(acc[1], acc[0], tr) {
			bl.unconfirmed(acc[1], "accused by site %d of sealing a share it could not open", acc[0])
		}
	}
	for _, acc := range accusations {
		if _, banned := c.banned[acc[1]]; !banned {
			bl.unconfirmed(acc[0], "accused site %d, unconfirmed", acc[1])
		}
	}
	creq, err := srv.ConsistencyRequest()
	if err != nil {
		return nil, 0, bl, fmt.Errorf("%w: %v", ErrCohort, err)
	}
	survivors := srv.Survivors()
	if len(survivors) < c.cfg.MinCohort {
		return nil, len(survivors), bl, fmt.Errorf("%w: %d masked inputs", ErrCohort, len(survivors))
	}
	if len(survivors)-1 < p.Threshold {
		// On the complete graph every survivor keeps the other survivors as
		// share holders; with fewer than t of them honest sites refuse to
		// sign. Stop before charging.
		return nil, len(survivors), bl, fmt.Errorf("%w: %d masked inputs leave each survivor %d share holders, threshold %d", ErrCohort, len(survivors), len(survivors)-1, p.Threshold)
	}
	var surv []int
	for _, id := range survivors {
		surv = append(surv, int(members[id-1]))
	}
	// Charge before anything can be unmasked, and have the survivors
	// witness the charge before they are asked for anything that opens
	// the sum (the Witness goes before the consistency request, on the
	// same stream).
	if charge != nil {
		seq, err := charge(len(survivors))
		if err != nil {
			return nil, len(survivors), bl, err
		}
		var to []*session
		for _, site := range surv {
			to = append(to, bySite[site])
		}
		if err := c.witnessCharge(to, round, seq); err != nil {
			return nil, len(survivors), bl, err
		}
	}
	cb, _ := creq.MarshalBinary()
	if start.Kind == wire.RoundStart_STATISTICS {
		// Each site signs one statistics survivor set, ever: the set goes
		// to disk before the sites are asked, so that a coordinator
		// started again after a crash asks for exactly it.
		if err := c.saveStatisticsSigning(surv); err != nil {
			return nil, len(survivors), bl, err
		}
	}
	for _, site := range surv {
		sendEngine(site, phaseMasked, cb)
	}
	keep(surv)
	// Phase 3: consistency signatures.
	if signed := handle(phaseConsistency, func(b []byte) error {
		var m secagg.ConsistencySignature
		if err := m.UnmarshalBinary(b); err != nil {
			return err
		}
		return srv.HandleSignature(&m)
	}); len(signed) > 0 {
		bl.signing = surv // sites have signed it: the only set they will sign
	}
	ureq, err := srv.UnmaskRequest()
	if err != nil {
		return nil, len(survivors), bl, err
	}
	ub, _ := ureq.MarshalBinary()
	var signers []int
	for _, s := range ureq.Signatures {
		sendEngine(int(members[s.Signer-1]), phaseConsistency, ub)
		signers = append(signers, int(members[s.Signer-1]))
	}
	keep(signers)
	// Phase 4: unmasking.
	handle(phaseUnmask, func(b []byte) error {
		var m secagg.UnmaskResponse
		if err := m.UnmarshalBinary(b); err != nil {
			return err
		}
		return srv.HandleUnmask(&m)
	})
	raw, err := srv.Aggregate()
	if err != nil {
		return nil, len(survivors), bl, err
	}
	bl.survivors = slices.Sorted(slices.Values(surv))
	c.cfg.hooks.recordOpened(round, int(start.Bits), surv, raw)
	return decodeRing(raw, int(start.Bits), start.Gamma), len(survivors), bl, nil
}

func decodeRing(raw []uint64, bits int, gamma float64) []float64 {
	mask := ^uint64(0)
	if bits < 64 {
		mask = 1<<bits - 1
	}
	half := uint64(1) << (bits - 1)
	out := make([]float64, len(raw))
	for k, v := range raw {
		v &= mask
		x := float64(v)
		if v >= half {
			x = -float64((^v + 1) & mask)
		}
		out[k] = x * gamma
	}
	return out
}

// checkpointPath is the file of round's checkpoint in the state
// directory dir.
func checkpointPath(dir string, round int) string {
	return filepath.Join(dir, "checkpoints", fmt.Sprintf("round-%04d.safetensors", round))
}

// keepCheckpoint reports whether the checkpoint of round q survives
// pruning after round newest's was written, keeping the newest keep
// files (rounds lists every checkpoint's round, sorted), every 10th
// round's, and every round's from averageFrom on (if positive).
func keepCheckpoint(q, newest, keep, averageFrom int, rounds []int) bool {
	if q >= newest || q%10 == 0 || averageFrom > 0 && q >= averageFrom {
		return true
	}
	i, _ := slices.BinarySearch(rounds, q)
	return len(rounds)-i <= keep
}

// pruneCheckpoints applies KeepCheckpoints after round newest's
// checkpoint was written. The newest is never removed: a resume starts
// from the newest checkpoint at or before the last charge, and the last
// charge is newest or the round after it. A file that cannot be removed
// is logged and left.
func (c *Coordinator) pruneCheckpoints(newest int) {
	if c.cfg.KeepCheckpoints <= 0 {
		return
	}
	names, err := filepath.Glob(filepath.Join(c.cfg.State, "checkpoints", "round-*.safetensors"))
	if err != nil {
		return
	}
	var rounds []int
	for _, n := range names {
		var q int
		if _, err := fmt.Sscanf(filepath.Base(n), "round-%d.safetensors", &q); err == nil && checkpointPath(c.cfg.State, q) == n {
			rounds = append(rounds, q)
		}
	}
	slices.Sort(rounds)
	for _, q := range rounds {
		if keepCheckpoint(q, newest, c.cfg.KeepCheckpoints, c.cfg.AverageFrom, rounds) {
			continue
		}
		path := checkpointPath(c.cfg.State, q)
		if err := os.Remove(path); err != nil {
			c.log.Warn("an old checkpoint could not be removed", "file", path, "err", err)
			continue
		}
		c.event(Event{Event: "checkpoint_pruned", Round: intp(q), File: path})
	}
}

func readCheckpoint(dir string, round int) ([]float64, error) {
	b, err := os.ReadFile(checkpointPath(dir, round))
	if err != nil {
		return nil, err
	}
	ts, _, err := fl.ReadSafetensors(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return ts["model"].Data, nil
}

// writeAtomic replaces path with b, mode 0600, durably (the directory is
// fsynced too) and unencrypted: what goes through it (statistics,
// checkpoints, the he CRS) is not secret.
func writeAtomic(path string, b []byte) error {
	return atrest.WriteFile(path, b, 0o600, atrest.Passphrase{})
}

// writeState replaces path with b atomically (writeAtomic), durably only
// if durable is set (see CoordinatorConfig.NoSync, SiteConfig.NoSync).
func writeState(path string, b []byte, durable bool) error {
	if durable {
		return writeAtomic(path, b)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func loadStats(dir string) (coordState, error) {
	var st coordState
	b, err := os.ReadFile(filepath.Join(dir, "statistics.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// EvaluateState evaluates the newest checkpoint in a coordinator's state
// directory on d, standardized with the federation's statistics. It
// returns the metrics and the checkpoint's round.
func EvaluateState(state, modelName string, hidden int, d *fl.Dataset) (fl.Metrics, int, error) {
	st, err := loadStats(state)
	if err != nil {
		return fl.Metrics{}, 0, fmt.Errorf("protocol: no federation statistics in %s: %w", state, err)
	}
	if len(st.Mean) != d.Dim() {
		return fl.Metrics{}, 0, fmt.Errorf("protocol: the federation has %d features, the data %d", len(st.Mean), d.Dim())
	}
	names, _ := filepath.Glob(filepath.Join(state, "checkpoints", "round-*.safetensors"))
	if len(names) == 0 {
		return fl.Metrics{}, 0, fmt.Errorf("protocol: no checkpoint in %s", state)
	}
	sort.Strings(names)
	var round int
	fmt.Sscanf(filepath.Base(names[len(names)-1]), "round-%d.safetensors", &round)
	w, err := readCheckpoint(state, round)
	if err != nil {
		return fl.Metrics{}, 0, err
	}
	m, err := fl.NewModel(modelName, d.Task, d.Dim(), max(d.Classes, 2), hidden)
	if err != nil {
		return fl.Metrics{}, 0, err
	}
	if m.NumParams() != len(w) {
		return fl.Metrics{}, 0, fmt.Errorf("protocol: checkpoint has %d parameters, a %s model %d", len(w), modelName, m.NumParams())
	}
	test := (&fl.Standardizer{Mean: st.Mean, Scale: st.Scale}).Apply(d)
	if d.Task == fl.Regression {
		test = fl.ScaleLabels(test, st.LabelMean, st.labelScale())
	}
	met, err := fl.Evaluate(m, w, test)
	met.RMSE *= st.labelScale()
	return met, round, err
}
