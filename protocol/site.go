package protocol

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/fl"
	"github.com/fl-secure/fl-secure/he"
	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
	"github.com/fl-secure/fl-secure/secagg"
)

// SiteConfig configures a hospital's client.
type SiteConfig struct {
	Site        int
	Coordinator string // host:port
	ServerName  string // TLS name of the coordinator (default: the host)
	Cert, Key   string
	Identity    string // Ed25519 identity key file (PKCS #8 PEM)
	CA          string
	Pin         string // hex SHA-256 of the coordinator's certificate
	Roster      *Roster
	// EpsilonCap is this hospital's own budget; 0 refuses every DP round
	// and AllowNoDP decides rounds without noise.
	EpsilonCap float64
	Delta      float64
	// AllowNoDP lets the site take part in secure-aggregation rounds that
	// carry no DP noise; AllowPlain, in plain mode, where the coordinator
	// sees the site's vector (NOT PRIVATE).
	AllowNoDP  bool
	AllowPlain bool
	// Level, if set, is the only privacy level ("record" or "client") this
	// site charges its ledger for; if empty, the level of the ledger's first
	// charge. ε at one level is not ε at another, so one ledger never mixes
	// them.
	Level dp.Level
	// MinCohort and Colluders are this hospital's floors. A value the
	// coordinator announces is used only where it is stricter: the site
	// refuses a round with fewer members than max(its, the coordinator's)
	// MinCohort, signs no survivor set smaller than that, raises the
	// secagg consistency quorum with max(its, the coordinator's)
	// Colluders, and accounts its charge with no more honest sites than the
	// difference of the two.
	MinCohort, Colluders int
	// MaxAttempts bounds the attempts of one training round this site pays
	// for (default 2): a round that fails after the site's charge may be
	// retried, and each retry costs the site again, so after MaxAttempts
	// charges for the same training round the site sits that round out.
	MaxAttempts int
	// MaxUnopened bounds the rounds in a row this site pays for without
	// seeing one open (default 3); then it pays for no more until its
	// operator raises the bound. Whoever makes rounds fail after the sites
	// paid — a coordinator, or a site that withholds its signature — costs
	// it at most this many charges in a row.
	MaxUnopened int
	Data        *fl.Dataset
	// Update, if set and Trainer is not, is sent (clipped) every
	// client-level round instead of training on Data: an update trained
	// elsewhere, a Trainer that returns it whatever the round. ModelOut
	// receives the global model after every round (.npy or .safetensors
	// by extension).
	Update []float64
	// Trainer, if set, computes this site's update for every training
	// round, at client or record level, from the round's global model,
	// layout and standardization (TrainRequest); it takes precedence over
	// Update. Everything it returns is checked, and the
	// site clips (client level) or bounds (record level) the update and
	// adds its noise itself. An error, or an update that fails a check,
	// makes the site send a zero update for the round (and pay for it as
	// usual): whether a trainer fails can depend on the data and the
	// round's model, so it must not decide whether the site joins. Its
	// words are logged here, never sent. Data,
	// if also set, contributes the statistics and the record count.
	Trainer func(TrainRequest) (TrainResult, error)
	// Records is, for a record-level Trainer and a site without Data, the
	// number of records the trainer holds and must use every round. With
	// Data it must be 0 or Data's row count.
	Records int
	// LocalTraining is the local SGD a client-level round runs on Data
	// from the global model (zero fields: 1 epoch, batch 16, learning rate
	// 0.1; Seed 0: the round's session identifier).
	LocalTraining fl.TrainConfig
	// Hidden is the hidden width of an mlp model (default 16); it must be
	// the coordinator's.
	Hidden   int
	ModelOut string
	State    string
	// LedgerKey is this site's ledger signing key file, in its kit
	// (Provision writes it; default: ledger-key.pem beside Identity), so
	// that whoever can write the state directory and its ledger does not
	// hold the key that signs it.
	LedgerKey string
	Logger    *slog.Logger
	// Passphrase, if set, encrypts this site's private files at rest: the
	// TLS and identity keys of its kit (as Provision writes them with a
	// passphrase), its ledger's signing key and its threshold-decryption
	// state (age, scrypt). A key file still in plaintext is read and
	// encrypted in place. Without a passphrase they are stored
	// unencrypted and NewSite logs a warning.
	Passphrase atrest.Passphrase
	// NoSync writes this site's state file atomically but without fsync,
	// so a crash of the machine may lose its newest version (the last
	// session joined, the unopened-round count, the ledger's anchor). For
	// simulations whose state lives no longer than the process; a real
	// site never sets it: its replay and budget protections rest on that
	// file surviving a crash. The ledger is fsync'ed regardless.
	NoSync bool
	// Rand, if set, replaces crypto/rand for noise and rounding (tests).
	Rand func() *dp.Sampler

	// Fault injection for tests: vanish instead of sending the message of
	// phase dropAt−1 (0: never), or corrupt every engine payload.
	dropAt   int
	corrupt  bool
	oversize bool // send a plain vector far over the message limit
	// misbehave, if set, sees every message before it is sent, with the
	// round it belongs to, and returns what to send instead (nil: send
	// nothing): a malicious site in tests.
	misbehave func(st *wire.RoundStart, m *wire.SiteMessage) *wire.SiteMessage

	// hooks are the fault simulator's observation and crash points
	// (simhooks.go); nil outside tests.
	hooks *simHooks
}

// A Site runs one hospital's side of the protocol.
type Site struct {
	cfg      SiteConfig
	log      *slog.Logger
	identity ed25519.PrivateKey
	ledger   *dp.Ledger
	sampler  *dp.Sampler
	rounds   int // completed rounds
	sent     atomic.Int64
	he       *he.Party // mode he: this site's threshold key
	heSetup  *he.Party // during the key ceremony
	state    siteState
	// witnessed is the newest coordinator ledger checkpoint this site
	// cosigned; witnessRound and witnessErr say what it made of the last
	// Witness and for which session (witness.go).
	witnessed    *dp.Checkpoint
	witnessRound uint64
	witnessErr   error
	// lastTrain is the newest training round this site saw start: the
	// layout and standardization written beside ModelOut.
	lastTrain *wire.RoundStart
}

// String names the site; it never prints its keys.
func (s *Site) String() string { return fmt.Sprintf("fl-secure site %d", s.cfg.Site) }

// GoString is String, so that %#v prints no key either.
func (s *Site) GoString() string { return s.String() }

// LogValue is String, for slog.
func (s *Site) LogValue() slog.Value { return slog.StringValue(s.String()) }

// BytesSent returns the bytes of protocol messages this site has sent.
func (s *Site) BytesSent() int64 { return s.sent.Load() }

// NewSite loads the site's keys and ledger.
func NewSite(cfg SiteConfig) (*Site, error) {
	if cfg.Roster == nil || cfg.Site < 1 || cfg.Site > len(cfg.Roster.Sites) {
		return nil, fmt.Errorf("protocol: site %d is not on the roster", cfg.Site)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if !cfg.Passphrase.IsSet() {
		cfg.Logger.Warn(noPassphraseWarning, "site", cfg.Site)
	}
	id, err := readKey(cfg.Identity, cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	want, _ := base64.StdEncoding.DecodeString(cfg.Roster.Sites[cfg.Site-1].Identity)
	if !id.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(want)) {
		return nil, fmt.Errorf("protocol: identity key is not site %d's roster key", cfg.Site)
	}
	if cfg.State == "" {
		return nil, errors.New("protocol: site needs a state directory")
	}
	if cfg.LedgerKey == "" && cfg.Identity != "" {
		cfg.LedgerKey = filepath.Join(filepath.Dir(cfg.Identity), ledgerKeyFile)
	}
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return nil, err
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 2
	}
	if cfg.MaxUnopened == 0 {
		cfg.MaxUnopened = 3
	}
	if cfg.Hidden == 0 {
		cfg.Hidden = 16
	}
	lt := &cfg.LocalTraining
	if lt.Epochs == 0 {
		lt.Epochs = 1
	}
	if lt.BatchSize == 0 {
		lt.BatchSize = 16
	}
	if lt.LearningRate == 0 {
		lt.LearningRate = 0.1
	}
	if cfg.Hidden < 0 || lt.Epochs < 0 || lt.BatchSize < 0 || !(lt.LearningRate > 0) || lt.ProxMu < 0 || math.IsNaN(lt.ProxMu) {
		return nil, fmt.Errorf("protocol: hidden width %d, local epochs %d, batch size %d, learning rate %v, proximal μ %v", cfg.Hidden, lt.Epochs, lt.BatchSize, lt.LearningRate, lt.ProxMu)
	}
	if cfg.Level != "" && cfg.Level != dp.RecordLevel && cfg.Level != dp.ClientLevel {
		return nil, fmt.Errorf("protocol: privacy level %q is neither record nor client", cfg.Level)
	}
	if cfg.Records < 0 || cfg.Records > 0 && cfg.Data != nil && cfg.Records != cfg.Data.Rows() {
		return nil, fmt.Errorf("protocol: %d records for a trainer whose site data has %d rows", cfg.Records, dataRows(cfg.Data))
	}
	if cfg.MinCohort < 0 || cfg.Colluders < 0 || cfg.MaxAttempts < 1 || cfg.MaxUnopened < 1 {
		return nil, fmt.Errorf("protocol: minimum cohort %d, colluders %d, attempts per round %d, unopened rounds %d", cfg.MinCohort, cfg.Colluders, cfg.MaxAttempts, cfg.MaxUnopened)
	}
	s := &Site{cfg: cfg, log: cfg.Logger.With("site", cfg.Site), identity: id}
	if s.state, err = loadSiteState(cfg.State, id); err != nil {
		return nil, err
	}
	if err := s.loadWitnessed(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.State, siteStateFile)); errors.Is(err, fs.ErrNotExist) {
		// A fresh site writes its state before anything else, so that
		// the file's absence later always means it was lost.
		if err := s.saveState(); err != nil {
			return nil, err
		}
	}
	if cfg.EpsilonCap > 0 {
		if s.ledger, err = openSiteLedger(cfg, cfg.EpsilonCap, cfg.Delta); err != nil {
			return nil, err
		}
		if err := s.anchorLedger(); err != nil {
			s.ledger.Close()
			return nil, err
		}
	} else if _, err := os.Stat(filepath.Join(cfg.State, "site-ledger.jsonl")); err == nil {
		// No cap this time, but a ledger from earlier runs: verify it and
		// anchor a charge a crash left past the signed state all the same,
		// or it could be cut off unnoticed while this site runs without DP.
		l, err := openSiteLedger(cfg, 0, 0)
		if err != nil {
			return nil, err
		}
		err = s.anchorLedger()
		l.Close()
		if err != nil {
			return nil, err
		}
	}
	if cfg.Rand != nil {
		s.sampler = cfg.Rand()
	} else if s.sampler, err = dp.NewSampler(nil); err != nil {
		return nil, err
	}
	return s, nil
}

func openSiteLedger(cfg SiteConfig, cap, delta float64) (*dp.Ledger, error) {
	return openOrCreateLedger(cfg.State, "site-ledger.jsonl", cfg.LedgerKey, cap, delta, cfg.Passphrase, func(pub ed25519.PublicKey) error {
		return checkSiteLedgerKey(cfg, pub)
	})
}

// LedgerKey returns the public key of the key that signs this hospital's
// ledger (the roster's, when the roster names one: the site does not start
// otherwise), or nil without a ledger.
func (s *Site) LedgerKey() ed25519.PublicKey {
	if s.ledger == nil {
		return nil
	}
	return s.ledger.PublicKey()
}

// Close closes the site's ledger.
func (s *Site) Close() {
	if s.ledger != nil {
		s.ledger.Close()
	}
}

// Spent returns the ε this hospital's ledger has recorded.
func (s *Site) Spent() float64 { return spent(s.ledger) }

// SpentPatient returns, at client level, the per-patient ε of what this
// hospital's ledger has recorded (dp.PatientEpsilon); 0 otherwise.
func (s *Site) SpentPatient() float64 {
	if s.ledger == nil {
		return 0
	}
	return s.ledger.SpentPatient()
}

// Rounds returns the rounds completed.
func (s *Site) Rounds() int { return s.rounds }

// Run connects to the coordinator (dialling out only) and serves rounds
// until ctx ends or the coordinator says goodbye, reconnecting with
// exponential backoff (up to 30 s) after network failures. After
// maxRefusals refusals of identity in a row (a TLS handshake either side
// rejects, or a session the coordinator closes before its Welcome) it
// stops: retrying cannot fix a kit that does not match the coordinator.
func (s *Site) Run(ctx context.Context) error {
	host := s.cfg.ServerName
	if host == "" {
		host, _, _ = cutPort(s.cfg.Coordinator)
	}
	tc, err := clientTLS(s.cfg.Cert, s.cfg.Key, s.cfg.CA, s.cfg.Pin, host, s.cfg.Passphrase)
	if err != nil {
		return err
	}
	backoff := 200 * time.Millisecond
	refused := 0
	for {
		err := s.session(ctx, tc)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errGoodbye) {
			return nil
		}
		if errors.Is(err, errFatal) {
			return err
		}
		if !errors.Is(err, errRefused) {
			refused = 0
		} else if refused++; refused >= maxRefusals {
			return fmt.Errorf("protocol: site %d was refused %d times in a row by %s: this site's kit does not belong to that coordinator's federation, "+
				"or the coordinator's certificate does not match the kit's pin; last: %w", s.cfg.Site, refused, s.cfg.Coordinator, err)
		}
		s.log.Warn("session ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

var (
	errGoodbye = errors.New("protocol: coordinator said goodbye")
	errFatal   = errors.New("protocol: fatal")
	// errRefused marks a session that ended on a refusal of identity.
	errRefused = errors.New("protocol: refused")
)

// maxRefusals is how many refusals of identity in a row end Site.Run.
const maxRefusals = 3

// refusal reports whether err, ending a session before the coordinator's
// Welcome, refuses this site's identity (or the coordinator's) rather than
// being a network failure that a retry may cure.
func refusal(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		return true // the coordinator refused the certificate or the Hello
	case codes.Unavailable:
		// gRPC reports a failed TLS handshake only as text. Errors from
		// crypto/tls and crypto/x509 start "tls: " or "x509: ": this site
		// refused the coordinator's certificate, or the coordinator this
		// site's ("remote error: tls: bad certificate"). A connection
		// refused, reset or closed mid-handshake is none of these.
		m := st.Message()
		return strings.Contains(m, "tls: ") || strings.Contains(m, "x509: ") || strings.Contains(m, "pin in this kit")
	}
	return false
}

func cutPort(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

// verdictCreds is TLS that also waits for the coordinator's verdict on
// this site's certificate. In TLS 1.3 a client finishes its handshake
// before the server has judged the client's certificate; a refusal arrives
// as an alert after it, and gRPC, writing meanwhile, may report only a
// broken pipe. The coordinator speaks first once it accepts a site (its
// HTTP/2 settings), so the first byte read is either that or the refusal.
type verdictCreds struct {
	credentials.TransportCredentials
}

func (v verdictCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := v.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		return nil, nil, err
	}
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(20 * time.Second)
	}
	conn.SetReadDeadline(d)
	first := make([]byte, 1)
	_, err = io.ReadFull(conn, first)
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		conn.Close()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "remote error" {
			return nil, nil, fmt.Errorf("protocol: the coordinator refused this site's certificate (%w)", err)
		}
		return nil, nil, fmt.Errorf("protocol: the coordinator said nothing after the TLS handshake: %w", err)
	}
	return &peekedConn{Conn: conn, first: first}, info, nil
}

func (v verdictCreds) Clone() credentials.TransportCredentials {
	return verdictCreds{v.TransportCredentials.Clone()}
}

// peekedConn gives back the bytes read ahead before the connection's own.
type peekedConn struct {
	net.Conn
	first []byte
}

func (c *peekedConn) Read(b []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(b, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (s *Site) session(ctx context.Context, tc *tls.Config) error {
	conn, err := grpc.NewClient(s.cfg.Coordinator, grpc.WithTransportCredentials(verdictCreds{credentials.NewTLS(tc)}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)))
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := wire.NewCoordinatorClient(conn).Session(sctx)
	if err != nil {
		if refusal(err) {
			return fmt.Errorf("%w: %w", errRefused, err)
		}
		return err
	}
	return s.converse(stream)
}

// A siteConn is the site's end of a session as converse uses it: the gRPC
// client stream, or an in-memory SiteStream.
type siteConn interface {
	Send(*wire.SiteMessage) error
	Recv() (*wire.CoordinatorMessage, error)
}

// converse runs the site's side of one session over stream: the Hello,
// then the rounds the coordinator starts, until the stream ends or the
// coordinator says goodbye (errGoodbye). The caller ends the stream when
// converse returns.
func (s *Site) converse(stream siteConn) error {
	welcomed := false
	// ended marks an error that refuses identity before the Welcome.
	ended := func(err error) error {
		if !welcomed && refusal(err) {
			return fmt.Errorf("%w: %w", errRefused, err)
		}
		return err
	}
	var r *siteRound
	// A session still open when the conversation ends is over for this
	// site.
	defer func() { s.leave(r) }()
	send := func(m *wire.SiteMessage) error {
		if s.cfg.misbehave != nil && r != nil {
			if m = s.cfg.misbehave(r.start, m); m == nil {
				return nil
			}
		}
		if e := m.GetEngine(); e != nil {
			if s.cfg.dropAt == int(e.Phase)+1 && r != nil && r.start.Kind == wire.RoundStart_TRAIN {
				return fmt.Errorf("%w: test dropout at phase %d", errFatal, e.Phase)
			}
			if s.cfg.corrupt {
				p := append([]byte(nil), e.Payload...)
				for i := 0; i < len(p); i += 7 {
					p[i] ^= 0x5a
				}
				m = engineMsg(e.Round, e.Phase, p[:len(p)/2])
			}
		}
		if p := m.GetPlain(); p != nil && s.cfg.oversize {
			m = &wire.SiteMessage{Body: &wire.SiteMessage_Plain{Plain: &wire.PlainVector{Round: p.Round, Vector: make([]float64, 1<<16)}}}
		}
		s.sent.Add(int64(proto.Size(m)))
		return stream.Send(m)
	}
	if err := send(&wire.SiteMessage{Body: &wire.SiteMessage_Hello{Hello: &wire.Hello{Site: uint32(s.cfg.Site), Version: wireVersion, Witnessed: s.witnessedNote()}}}); err != nil {
		if errors.Is(err, io.EOF) {
			_, err = stream.Recv() // the stream's status says why it ended
		}
		return ended(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return ended(err)
		}
		switch b := m.Body.(type) {
		case *wire.CoordinatorMessage_Welcome:
			if int(b.Welcome.Site) != s.cfg.Site {
				return fmt.Errorf("%w: welcomed as site %d", errFatal, b.Welcome.Site)
			}
			welcomed = true
			s.log.Info("connected", "mode", b.Welcome.Mode)
			if err := s.checkPlan(b.Welcome.Plan); err != nil {
				s.log.Error("this site refuses the federation's plan", "reason", err.Error())
				if send(&wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: &wire.Refuse{Round: 0, Reason: err.Error()}}}) == nil {
					// The coordinator ends the session once it has read
					// the refusal; ending it first could lose it.
					for {
						if _, rerr := stream.Recv(); rerr != nil {
							break
						}
					}
				}
				return fmt.Errorf("%w: site %d refuses the federation's plan: %w", errFatal, s.cfg.Site, err)
			}
		case *wire.CoordinatorMessage_Start:
			s.leave(r)
			r = nil
			nr, out, err := s.start(b.Start)
			if err != nil {
				s.log.Info("round refused", "round", roundOf(b.Start.Round), "reason", err.Error())
				if err := send(&wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: &wire.Refuse{Round: b.Start.Round, Reason: err.Error()}}}); err != nil {
					return err
				}
				continue
			}
			r = nr
			for _, o := range out {
				if err := send(o); err != nil {
					return err
				}
			}
		case *wire.CoordinatorMessage_Engine:
			if r == nil || b.Engine.Round != r.start.Round {
				s.log.Warn("engine message for no open round ignored")
				continue
			}
			out, err := r.step(b.Engine)
			if err != nil {
				s.log.Warn("round abandoned", "round", roundOf(r.start.Round), "err", err)
				// Say why, so the coordinator need not wait for a timeout and
				// knows whom to leave out of a retry.
				refuse := &wire.Refuse{Round: r.start.Round, Reason: r.reason(err)}
				s.leave(r)
				r = nil
				if err := send(&wire.SiteMessage{Body: &wire.SiteMessage_Refuse{Refuse: refuse}}); err != nil {
					return err
				}
				continue
			}
			if out != nil {
				if err := send(out); err != nil {
					return err
				}
			}
		case *wire.CoordinatorMessage_End:
			s.end(r, b.End)
			s.leave(r)
			r = nil
		case *wire.CoordinatorMessage_Witness:
			if err := send(s.witness(b.Witness, r)); err != nil {
				return err
			}
		case *wire.CoordinatorMessage_Bye:
			return errGoodbye
		}
	}
}

// checkPlan checks the federation's plan announced in the Welcome (nil:
// none) against this site's own settings, so that a site that would
// refuse the rounds refuses at once instead of at the round where its cap
// runs out. It only ever adds a refusal: start checks every round again,
// whatever the plan said. The federation's ε at δ can only be covered by
// a cap at least as large at a δ no larger (ε(δ) decreases in δ, and the
// site charges with floors at least the coordinator's); at a larger δ the
// comparison proves nothing and is left to the rounds.
func (s *Site) checkPlan(p *wire.Plan) error {
	if p == nil {
		return nil
	}
	if d := s.cfg.Roster.Digest(); int(p.Sites) != len(s.cfg.Roster.Sites) || !bytes.Equal(p.RosterSha256, d[:]) {
		return fmt.Errorf("the coordinator's roster (%d sites) is not this kit's roster.json (%d sites): the federation was changed "+
			"(provision --add-site or --renew); install the roster.json from the coordinator's operator in this kit", p.Sites, len(s.cfg.Roster.Sites))
	}
	plan := fmt.Sprintf("ε = %g, δ = %g over %d rounds at %s level", p.Epsilon, p.Delta, p.Rounds, p.Level)
	switch {
	case math.IsNaN(p.Epsilon) || p.Epsilon < 0:
		return fmt.Errorf("the plan's ε %v is not a budget", p.Epsilon)
	case p.Epsilon == 0 && !s.cfg.AllowNoDP:
		return errors.New("the federation plans no DP noise and this site does not allow that")
	case p.Epsilon == 0:
		return nil
	case s.ledger == nil:
		return fmt.Errorf("the federation plans %s and this site has no privacy budget (epsilon_cap)", plan)
	case s.cfg.Delta <= p.Delta && s.cfg.EpsilonCap < p.Epsilon:
		return fmt.Errorf("this site's ε cap %g (δ = %g) cannot cover the federation's plan (%s); raise epsilon_cap, or ask the coordinator's operator for a smaller plan",
			s.cfg.EpsilonCap, s.cfg.Delta, plan)
	}
	return s.checkLevel(p.Level)
}

// end handles the coordinator's word that a round ended.
func (s *Site) end(r *siteRound, e *wire.RoundEnd) {
	if e.Status != "ok" {
		return
	}
	if r != nil && r.start.Round == e.Round {
		if r.start.Kind == wire.RoundStart_TRAIN {
			s.rounds++ // training rounds this site took part in
		}
		if r.charge != nil && r.start.Mode == string(HE) {
			// he: the site cannot see a decryption it did not take part
			// in, so it takes the coordinator's word that the round opened.
			// In secagg mode only its own unmasking counts (step).
			r.settled = true
			s.opened()
		}
	}
	if s.cfg.ModelOut != "" && len(e.Model) > 0 {
		if err := writeModel(s.cfg.ModelOut, e.Model, roundOf(e.Round), s.lastTrain, s.cfg.Hidden); err != nil {
			s.log.Error("writing the model", "err", err)
		}
	}
}

// siteRound is the site's state in one session.
type siteRound struct {
	s      *Site
	start  *wire.RoundStart
	floor  int // the smallest cohort this site lets its input be opened in
	client *secagg.Client
	charge *dp.Charge
	input  []uint64 // secagg: the quantized, noised contribution
	// charged records that this session's charge is in the ledger.
	charged bool
	// settled records that this site saw the session's sum open (its
	// unmasking shares revealed, or in he the coordinator's word), or
	// marked its charge unopened.
	settled bool
	// base is the size of the coordinator's ledger checkpoint this site
	// cosigned for the session's start (-1: none); chargeCosigned records
	// that it cosigned, in this session, one holding the session's charge
	// appended after base, and chargeErr why it refused to (witness.go).
	base           int64
	chargeCosigned bool
	chargeErr      error
}

// start decides whether to take part in a round and, if so, returns the
// round state and the messages to send (Join and the secagg advert, the
// he submission, or the plain vector). Everything the site can check
// before it releases anything is checked here, so that a round it cannot
// complete is refused at Join, with a reason the coordinator logs, rather
// than abandoned after the site has paid for it.
func (s *Site) start(st *wire.RoundStart) (*siteRound, []*wire.SiteMessage, error) {
	if err := checkStart(st, len(s.cfg.Roster.Sites)); err != nil {
		return nil, nil, err
	}
	if err := s.checkWitness(st); err != nil {
		return nil, nil, err
	}
	if st.Kind == wire.RoundStart_TRAIN {
		s.lastTrain = st
	}
	r := &siteRound{s: s, start: st, base: -1}
	if s.witnessRound == st.Round && s.witnessErr == nil && s.witnessed != nil {
		r.base = s.witnessed.Size
	}
	me := -1
	for i, m := range st.Members {
		if int(m) == s.cfg.Site {
			me = i
		}
	}
	if me < 0 {
		return nil, nil, errors.New("not a member of this round")
	}
	// This site's floors; the coordinator's values count only where they
	// are stricter.
	r.floor = max(s.cfg.MinCohort, int(st.MinCohort), 3)
	colluders := max(s.cfg.Colluders, int(st.Colluders))
	if st.Kind != wire.RoundStart_HE_SETUP && len(st.Members) < r.floor {
		return nil, nil, fmt.Errorf("the round has %d members; this site's minimum cohort is %d", len(st.Members), r.floor)
	}
	if colluders >= r.floor {
		return nil, nil, fmt.Errorf("%d colluders in a cohort of %d leave no honest site", colluders, r.floor)
	}
	if st.Kind == wire.RoundStart_STATISTICS {
		// One release of the statistics, in one mode, over one set.
		done := s.state.statisticsReleased()
		switch {
		case done == "":
		case st.Mode == string(SecAgg) && s.state.Statistics != nil:
			if !containsAll(st.Members, s.state.Statistics) {
				return nil, nil, fmt.Errorf("this site has signed the statistics survivor set %v and this round leaves some of them out", s.state.Statistics)
			}
		default:
			return nil, nil, fmt.Errorf("this site has already released its statistics %s; it releases them once", done)
		}
	}
	paid := st.Kind == wire.RoundStart_TRAIN || st.Kind == wire.RoundStart_STATISTICS
	if paid && s.ledger != nil {
		if err := s.checkLevel(st.Level); err != nil {
			return nil, nil, err
		}
	}
	if paid {
		if st.SiteSigma == 0 {
			if !s.cfg.AllowNoDP {
				return nil, nil, errors.New("the round carries no DP noise and this site does not allow that")
			}
		} else {
			if s.ledger == nil {
				return nil, nil, errors.New("this site has no privacy budget (epsilon_cap)")
			}
			k := r.floor
			if st.Mode == string(HE) {
				// The decryptors enforce the group's minimum number of
				// contributors, fixed at the key ceremony, whatever this
				// round announces: charge for no more than that.
				p, _, err := s.heParty(st)
				if err != nil {
					return nil, nil, err
				}
				k = min(k, p.MinContributors())
				if colluders >= k {
					return nil, nil, fmt.Errorf("%d colluders among the %d contributors a sum must hold leave no honest site", colluders, k)
				}
			}
			chargeFor := s.chargeFor
			if st.Kind == wire.RoundStart_STATISTICS {
				chargeFor = s.statisticsChargeFor
			}
			ch, err := chargeFor(st, k, colluders)
			if err != nil {
				return nil, nil, err
			}
			if _, err := s.ledger.Preview(ch); err != nil {
				return nil, nil, err
			}
			if n, err := s.attempts(ch.Round); err != nil {
				return nil, nil, err
			} else if n >= s.cfg.MaxAttempts {
				if ch.Round == statisticsRound {
					return nil, nil, fmt.Errorf("this site has already paid for %d attempts of the statistics release (its limit); it sits the round out", n)
				}
				return nil, nil, fmt.Errorf("this site has already paid for %d attempts of round %d (its limit); it sits the round out", n, ch.Round)
			}
			if s.state.Unopened >= s.cfg.MaxUnopened {
				return nil, nil, fmt.Errorf("this site has paid for %d rounds in a row that did not open (its limit, max_unopened); it pays for no more until its operator looks into it and raises the limit", s.state.Unopened)
			}
			r.charge = &ch
		}
	}
	if st.Mode == string(HE) {
		if err := s.joinSession(st.Round); err != nil {
			return nil, nil, err
		}
		out, err := s.heStart(r)
		if err != nil {
			return nil, nil, err
		}
		return r, out, nil
	}
	if st.Mode == string(Plain) {
		if !s.cfg.AllowPlain {
			return nil, nil, errors.New("plain mode is NOT PRIVATE and this site does not allow it")
		}
		if paid && (st.SiteSigma != 0 || !s.cfg.AllowNoDP) {
			// A plain round sends the vector as it is: no noise, no charge.
			return nil, nil, errors.New("a plain round carries no DP noise; this site takes part only with AllowNoDP, and in none that claims noise")
		}
		v, err := r.vector()
		if err != nil {
			return nil, nil, err
		}
		if err := s.joinSession(st.Round); err != nil {
			return nil, nil, err
		}
		if st.Kind == wire.RoundStart_STATISTICS {
			if err := s.sendPlainStatistics(st.Round); err != nil {
				return nil, nil, err
			}
		}
		return r, []*wire.SiteMessage{{Body: &wire.SiteMessage_Plain{Plain: &wire.PlainVector{Round: st.Round, Vector: v}}}}, nil
	}
	// secagg: compute the contribution now, so that a site that cannot
	// produce one (wrong model shape, update length or labels) refuses
	// before it joins; the grid and the noise first, so that a refusal on
	// them never waits for (or depends on) the site's training.
	if _, err := r.noise(); err != nil {
		return nil, nil, err
	}
	v, err := r.vector()
	if err != nil {
		return nil, nil, err
	}
	if r.input, err = r.quantize(v); err != nil {
		return nil, nil, err
	}
	ids := s.cfg.Roster.identities()
	pubs := make([]ed25519.PublicKey, len(st.Members))
	for i, m := range st.Members {
		pubs[i] = ids[m-1] // checkStart bounded every member
	}
	roster, err := secagg.NewRoster(pubs)
	if err != nil {
		return nil, nil, err
	}
	n := len(st.Members)
	p := secagg.Params{Round: st.Round, Clients: n, Threshold: int(st.Threshold), Degree: n - 1,
		Corrupt: colluders, MinSurvivors: r.floor, Length: int(st.Length), Bits: int(st.Bits), Context: terms(st)}
	if p.Threshold <= n/2 {
		return nil, nil, fmt.Errorf("threshold %d is not above half of %d members", p.Threshold, n)
	}
	if err := p.Validate(); err != nil {
		// For example: this site's colluders reach the coordinator's
		// threshold, or leave no consistency quorum.
		return nil, nil, err
	}
	if r.client, err = secagg.NewClient(p, uint32(me+1), s.identity, roster, nil); err != nil {
		return nil, nil, err
	}
	adv, err := r.client.AdvertiseKeys()
	if err != nil {
		return nil, nil, err
	}
	if err := s.joinSession(st.Round); err != nil {
		return nil, nil, err
	}
	s.cfg.hooks.recordInput(st.Round, s.cfg.Site, r.input)
	ab, _ := adv.MarshalBinary()
	return r, []*wire.SiteMessage{
		{Body: &wire.SiteMessage_Join{Join: &wire.Join{Round: st.Round}}},
		engineMsg(st.Round, phaseAdvert, ab),
	}, nil
}

// accusePrefix starts a refusal that holds another site responsible: the
// coordinator reads the site number after it.
const accusePrefix = "accuses site "

// reason is the refusal reason for a step's error. A share this site could
// not open names its sender's site: only that site or the coordinator can
// have spoiled it.
func (r *siteRound) reason(err error) string {
	var bad *secagg.BadShareError
	if errors.As(err, &bad) && bad.Sender >= 1 && int(bad.Sender) <= len(r.start.Members) {
		return fmt.Sprintf("%s%d: %v", accusePrefix, r.start.Members[bad.Sender-1], err)
	}
	return err.Error()
}

// accused returns the site a refusal holds responsible, if any.
func accused(reason string) (int, bool) {
	rest, ok := strings.CutPrefix(reason, accusePrefix)
	if !ok {
		return 0, false
	}
	var site int
	if _, err := fmt.Sscanf(rest, "%d:", &site); err != nil {
		return 0, false
	}
	return site, true
}

// containsAll reports whether members includes every site of want.
func containsAll(members []uint32, want []int) bool {
	for _, w := range want {
		if !slices.Contains(members, uint32(w)) {
			return false
		}
	}
	return true
}

// checkLevel refuses a training round at another privacy level than this
// site's (its configured Level, or that of its ledger's first charge).
func (s *Site) checkLevel(level string) error {
	if level != string(dp.RecordLevel) && level != string(dp.ClientLevel) {
		return fmt.Errorf("privacy level %q is neither record nor client", level)
	}
	want := string(s.cfg.Level)
	if want == "" {
		es, err := dp.ReadLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"))
		if err != nil {
			return err
		}
		for _, e := range es {
			if e.Kind == "charge" {
				want = string(e.Level)
				break
			}
		}
	}
	if want != "" && level != want {
		return fmt.Errorf("the round is charged at %s level; this site's ledger holds %s-level ε only", level, want)
	}
	return nil
}

// attempts counts the charges this site's ledger holds for training round
// round.
func (s *Site) attempts(round int) (int, error) {
	es, err := dp.ReadLedger(filepath.Join(s.cfg.State, "site-ledger.jsonl"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		if e.Kind == "charge" && e.Round == round {
			n++
		}
	}
	return n, nil
}

// checkStart bounds every size a RoundStart carries before any is used:
// the coordinator is not trusted to keep them sane.
func checkStart(st *wire.RoundStart, rosterSize int) error {
	// Only the kinds and modes this site knows, in the combinations it
	// knows: every privacy rule below is keyed on them, and an unknown kind
	// must not slip past the rules of a training round.
	switch {
	case st.Mode != string(SecAgg) && st.Mode != string(HE) && st.Mode != string(Plain):
		return fmt.Errorf("unknown mode %q", st.Mode)
	case st.Kind != wire.RoundStart_TRAIN && st.Kind != wire.RoundStart_STATISTICS && st.Kind != wire.RoundStart_HE_SETUP:
		return fmt.Errorf("unknown round kind %d", st.Kind)
	case st.Kind == wire.RoundStart_HE_SETUP && st.Mode != string(HE):
		return fmt.Errorf("a key ceremony in mode %s", st.Mode)
	}
	switch {
	case st.Kind != wire.RoundStart_HE_SETUP && (st.Length == 0 || st.Length > secagg.MaxLength):
		return fmt.Errorf("round length %d outside [1, 2^28]", st.Length)
	case len(st.Members) == 0 || len(st.Members) > rosterSize:
		return fmt.Errorf("%d members for a roster of %d", len(st.Members), rosterSize)
	case int(st.Sites) != rosterSize:
		return fmt.Errorf("the round counts %d sites, the roster %d", st.Sites, rosterSize)
	case len(st.Model) != 0 && len(st.Model) != int(st.Length):
		return fmt.Errorf("model of %d parameters for length %d", len(st.Model), st.Length)
	case len(st.Mean) != len(st.Scale) || len(st.Mean) > int(st.Length):
		return errors.New("standardization vectors of inconsistent lengths")
	case st.Kind == wire.RoundStart_TRAIN && st.Mode != string(HE) && st.Mode != string(Plain) && st.Bits != 32 && st.Bits != 64:
		return fmt.Errorf("ring width %d bits", st.Bits)
	case math.IsNaN(st.Clip) || math.IsNaN(st.SiteSigma) || math.IsNaN(st.Gamma) || st.SiteSigma < 0:
		return errors.New("NaN or negative noise parameters")
	}
	seen := map[uint32]bool{}
	for _, m := range st.Members {
		if m < 1 || int(m) > rosterSize || seen[m] {
			return fmt.Errorf("member %d is out of range or repeated", m)
		}
		seen[m] = true
	}
	for _, x := range st.Model {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return errors.New("the model holds NaN or infinite parameters")
		}
	}
	// Checked here, on public values, so that nothing after depends on
	// them being sane: a site's answer to an accepted round never depends
	// on its data (see vector).
	for i := range st.Mean {
		if st.Kind == wire.RoundStart_STATISTICS {
			break // public bounds, checked by statisticsVector
		}
		if m, sc := st.Mean[i], st.Scale[i]; math.IsNaN(m) || math.IsInf(m, 0) || !(sc > 0) || math.IsInf(sc, 0) {
			return fmt.Errorf("standardization %d: mean %v, scale %v: want finite values and a positive scale", i, m, sc)
		}
	}
	return nil
}

func engineMsg(round uint64, phase uint32, b []byte) *wire.SiteMessage {
	return &wire.SiteMessage{Body: &wire.SiteMessage_Engine{Engine: &wire.Engine{Round: round, Phase: phase, Payload: b}}}
}

// chargeFor recomputes the round's privacy charge from its public
// parameters. The sum that holds this site's input is opened only over a
// survivor set of at least k sites that this site signed itself (secagg;
// Params.MinSurvivors) or from at least k contributors (he), of which at
// most c collude and add no noise: the charge counts k − c honest noise
// shares, whatever the coordinator claims.
func (s *Site) chargeFor(st *wire.RoundStart, k, c int) (dp.Charge, error) {
	if st.Gamma <= 0 || st.Clip <= 0 || st.Length == 0 {
		return dp.Charge{}, errors.New("the round's noise parameters are incomplete")
	}
	if k > int(st.Sites) || c >= k {
		return dp.Charge{}, fmt.Errorf("cohort %d with %d colluders among %d sites leaves no honest share", k, c, st.Sites)
	}
	level := dp.RecordLevel
	if st.Level == string(dp.ClientLevel) {
		level = dp.ClientLevel
	}
	return dp.PlanCharge("federation", roundOf(st.Round), level, dp.NoisePlan{Release: dp.TrainingRelease,
		Threshold: k, Colluders: c, MinCohort: int(st.MinCohort), Clients: int(st.Sites), Gamma: st.Gamma,
		Dim: int(st.Length), RingBits: int(st.Bits), SiteSigma: st.SiteSigma, Clip: st.Clip})
}

// vector computes what the site contributes: statistics, or the sum of its
// records' clipped gradients at the round's model, or its own update.
func (r *siteRound) vector() ([]float64, error) {
	st, cfg := r.start, r.s.cfg
	if st.Kind == wire.RoundStart_STATISTICS {
		return r.statisticsVector()
	}
	if cfg.Trainer != nil {
		return r.trained(cfg.Trainer)
	}
	if cfg.Update != nil {
		if st.Level != string(dp.ClientLevel) {
			return nil, errors.New("an update trained elsewhere can only join a client-level federation")
		}
		// The update is this site's configuration, not its data: a wrong
		// length is refused with the reason.
		if len(cfg.Update) != int(st.Length) {
			return nil, fmt.Errorf("the update has %d values, the model %d", len(cfg.Update), st.Length)
		}
		return r.trained(func(TrainRequest) (TrainResult, error) { return TrainResult{Update: cfg.Update}, nil })
	}
	if cfg.Data == nil {
		return nil, errors.New("no data and no update")
	}
	data, err := r.standardized()
	if err != nil {
		return nil, err
	}
	m, err := r.dataModel()
	if err != nil {
		return nil, err
	}
	if m.NumParams() != len(st.Model) || len(st.Model) != int(st.Length) {
		return nil, fmt.Errorf("the model has %d parameters, this site's %s model %d", len(st.Model), st.ModelName, m.NumParams())
	}
	if data.Task != fl.Regression {
		data = r.withinClasses(data, max(m.Outputs(), 2))
	}
	if st.Level == string(dp.ClientLevel) {
		// Client level with local data: local SGD from the global model;
		// the whole update is clipped.
		tc := cfg.LocalTraining
		if tc.Seed == 0 {
			tc.Seed = st.Round
		}
		up, _, err := fl.LocalSGD(m, st.Model, data, tc)
		if err == nil {
			err = dp.ClipL2(up, st.Clip, nil)
		}
		if err != nil {
			// Training diverged at the round's model and standardization
			// (say an overflow to Inf): what went wrong depends on the
			// data, so it stays here and the site sends a zero update,
			// within the clip like any other.
			return r.zero(err), nil
		}
		return up, nil
	}
	// Every record contributes its clipped gradient, a record whose
	// gradient is not finite nothing: the sum's sensitivity to one record
	// is clip either way, and nothing about the records makes it fail.
	g, _, err := fl.ClippedGradientSum(m, st.Model, data, 1, st.Clip, r.s.sampler)
	if err != nil {
		return r.zero(err), nil
	}
	return g, nil
}

// zero returns the zero update a site sends when computing its own
// failed after the round's public parameters were accepted, and logs why
// here. Refusing instead would let a coordinator that chooses the model,
// the standardization and the grid learn something about the data from
// whether the site joins, without any charge: once a round is accepted the
// site's answer never depends on its data (TestAttackTinyScaleRangeOracle,
// TestAttackTrainerFailureIsAnOracle). A zero vector is within the clip,
// so the round's charge covers it.
func (r *siteRound) zero(err error) []float64 {
	r.s.log.Error("this site's update could not be computed; it sends a zero update for this round (and pays for it as usual)",
		"round", roundOf(r.start.Round), "err", err)
	return make([]float64, r.start.Length)
}

// dataModel returns the round's model for this site's data: its classes
// come from the round (a site need not hold every class), and its data's
// task must be the model's.
func (r *siteRound) dataModel() (fl.Model, error) {
	st, data := r.start, r.s.cfg.Data
	l, task, err := roundLayout(st, r.s.cfg.Hidden)
	if err != nil {
		return nil, err
	}
	if l.Features != data.Dim() {
		return nil, fmt.Errorf("the round's %s model takes %d features, this site's data has %d", l.Model, l.Features, data.Dim())
	}
	switch {
	case task == fl.Regression && data.Task != fl.Regression:
		return nil, fmt.Errorf("the round trains a %s model (regression); this site loaded its data with class labels (client --model %s)", l.Model, l.Model)
	case task != fl.Regression && data.Task == fl.Regression:
		return nil, fmt.Errorf("the round trains a %s model (classification); this site loaded its data with a real-valued label (client --model linear)", l.Model)
	}
	// A label beyond the round's classes is not refused: the largest label
	// a site holds is its data (one patient of a rare class), and the
	// coordinator chooses the class count. vector leaves such records out.
	return fl.NewModel(l.Model, task, l.Features, max(l.Outputs, 2), l.Hidden)
}

// withinClasses returns the records of d whose label is one of the
// round's classes. Those beyond are left out and counted only in this
// site's log: whether it holds any is its data (TestAttackRareClassRevealedByRefusal).
func (r *siteRound) withinClasses(d *fl.Dataset, classes int) *fl.Dataset {
	var keep []int
	for i, y := range d.Y {
		if int(y) < classes {
			keep = append(keep, i)
		}
	}
	if len(keep) == len(d.Y) {
		return d
	}
	r.s.log.Warn("records whose label is beyond the round's classes are left out of this round (check the coordinator's --classes)",
		"round", roundOf(r.start.Round), "classes", classes, "left_out", len(d.Y)-len(keep))
	out := d.Subset(keep)
	out.Classes = min(d.Classes, classes)
	return out
}

// roundLayout returns the layout of a training round's model and its
// task: the features from the round's length (logistic, linear) or
// standardization (softmax, mlp), the outputs from its length, and an
// mlp's hidden width from this site's configuration (the wire does not
// carry it).
func roundLayout(st *wire.RoundStart, hidden int) (fl.Layout, fl.Task, error) {
	n, d := int(st.Length), len(st.Mean)
	var l fl.Layout
	var err error
	task := fl.Binary
	switch st.ModelName {
	case "logistic", "linear":
		if st.ModelName == "linear" {
			task = fl.Regression
		}
		l, err = fl.NewLayout(st.ModelName, n-1, 1, 0)
	case "softmax":
		if d < 1 || n%(d+1) != 0 {
			return fl.Layout{}, 0, fmt.Errorf("a softmax model of %d parameters does not fit %d standardized features", n, d)
		}
		task = fl.Multiclass
		l, err = fl.NewLayout("softmax", d, n/(d+1), 0)
	case "mlp":
		if hidden < 1 {
			hidden = 16
		}
		rest := n - hidden*(d+1)
		if d < 1 || rest <= 0 || rest%(hidden+1) != 0 {
			return fl.Layout{}, 0, fmt.Errorf("an mlp of %d parameters does not fit %d features and this site's hidden width %d (it must be the coordinator's)", n, d, hidden)
		}
		if rest/(hidden+1) > 1 {
			task = fl.Multiclass
		}
		l, err = fl.NewLayout("mlp", d, rest/(hidden+1), hidden)
	default:
		return fl.Layout{}, 0, fmt.Errorf("unknown model %q", truncateReason(st.ModelName))
	}
	if err != nil {
		return fl.Layout{}, 0, err
	}
	if l.Len() != n {
		return fl.Layout{}, 0, fmt.Errorf("a %s model of %d parameters for length %d", l.Model, l.Len(), n)
	}
	return l, task, nil
}

func truncateReason(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func dataRows(d *fl.Dataset) int {
	if d == nil {
		return 0
	}
	return d.Rows()
}

// A TrainRequest is one training round as a site's Trainer sees it.
type TrainRequest struct {
	Round  int       // the training round: 1, 2, …
	Level  dp.Level  // client or record
	Clip   float64   // the round's L2 clipping norm
	Layout fl.Layout // the named tensors of Model and of the update
	Model  []float64 // the global model, flat (a copy)
	Mean   []float64 // standardization: the features', then a regression label's
	Scale  []float64 // (Mean[d], Scale[d] when the round carries one)
	// Records is, at record level, the number of records the update must
	// sum over: every record of the site, each once (sampling rate 1, as
	// fl.ClippedGradientSum with q = 1).
	Records int
}

// Manifest returns the request as the manifest a trainer outside
// fl-secure reads (docs/TRAINER.md).
func (q TrainRequest) Manifest() *fl.Manifest {
	m := manifestFor(q.Layout, q.Round, q.Mean, q.Scale)
	m.Level, m.Clip, m.Records = string(q.Level), q.Clip, q.Records
	return m
}

// manifestFor describes a model of layout l at a round with its
// standardization: the features' means and scales (0 and 1 where the
// round carries none) and a linear model's label pair if the round has it.
func manifestFor(l fl.Layout, round int, mean, scale []float64) *fl.Manifest {
	d := l.Features
	m := &fl.Manifest{Layout: l, Round: round, Mean: make([]float64, d), Scale: make([]float64, d)}
	if len(mean) >= d && len(scale) == len(mean) {
		copy(m.Mean, mean[:d])
		copy(m.Scale, scale[:d])
	} else {
		for j := range m.Scale {
			m.Scale[j] = 1
		}
	}
	if l.Model == "linear" && len(mean) == d+1 && len(scale) == d+1 {
		lm, ls := mean[d], scale[d]
		m.LabelMean, m.LabelScale = &lm, &ls
	}
	return m
}

// A TrainResult is what a Trainer returns.
type TrainResult struct {
	// Update is, at client level, the trained model minus the global
	// model; at record level, the sum over the request's Records records
	// of each record's loss gradient at the global model, each clipped to
	// L2 norm Clip before summing. Flat, in the layout's order.
	Update []float64
	// Records is, at record level, the number of records summed: it must
	// be the request's.
	Records int
}

// trained runs the site's Trainer for a training round and checks what
// it returns: the length, finite values, and at record level the record
// count it was told and a sum no longer than records × clip, which is all
// the site can check of a sum of per-record clipped gradients (that each
// record was clipped is the trainer's responsibility: docs/TRAINER.md).
// The site clips a client-level update itself. A trainer that fails, or
// an update that fails a check, gives a zero update (see zero): the
// reasons, which may depend on the data, stay in the site's log, and the
// coordinator cannot tell such a round from any other.
func (r *siteRound) trained(trainer func(TrainRequest) (TrainResult, error)) ([]float64, error) {
	st, cfg := r.start, r.s.cfg
	l, _, err := roundLayout(st, cfg.Hidden)
	if err != nil {
		return nil, err
	}
	if len(st.Model) != int(st.Length) {
		return nil, fmt.Errorf("the round carries %d model parameters for length %d", len(st.Model), st.Length)
	}
	q := TrainRequest{Round: roundOf(st.Round), Level: dp.Level(st.Level), Clip: st.Clip, Layout: l,
		Model: slices.Clone(st.Model), Mean: slices.Clone(st.Mean), Scale: slices.Clone(st.Scale)}
	record := st.Level == string(dp.RecordLevel)
	if record {
		q.Records = cfg.Records
		if cfg.Data != nil {
			q.Records = cfg.Data.Rows()
		}
		if q.Records < 1 {
			return nil, errors.New("a record-level trainer needs this site's record count (its data, or Records)")
		}
	} else if st.Level != string(dp.ClientLevel) {
		return nil, fmt.Errorf("privacy level %q is neither record nor client", truncateReason(st.Level))
	}
	refuse := func(err error) ([]float64, error) {
		return r.zero(fmt.Errorf("the trainer's update is refused: %w", err)), nil
	}
	res, err := trainer(q)
	if err != nil {
		return refuse(err)
	}
	u := slices.Clone(res.Update)
	if len(u) != int(st.Length) {
		return refuse(fmt.Errorf("the update has %d values, the %s model %d", len(u), l.Model, st.Length))
	}
	var norm float64
	for i, x := range u {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return refuse(fmt.Errorf("the update's value %d is NaN or infinite", i))
		}
		norm = math.Hypot(norm, x)
	}
	if !record {
		if err := dp.ClipL2(u, st.Clip, nil); err != nil {
			return refuse(err)
		}
		return u, nil
	}
	if res.Records != q.Records {
		return refuse(fmt.Errorf("the trainer summed %d records; it was told to use %d", res.Records, q.Records))
	}
	// A sum of n vectors of norm at most clip has norm at most n·clip
	// (triangle inequality); a longer one was not clipped per record.
	if bound := float64(q.Records) * st.Clip; norm > bound*(1+1e-9) {
		return refuse(fmt.Errorf("the gradient sum has L2 norm %.6g, above records × clip = %.6g: its records were not each clipped to %v", norm, bound, st.Clip))
	}
	return u, nil
}

// standardized returns the site's data standardized as the round says:
// the features with its means and scales and, for regression, the label
// with the last pair when the round carries one.
func (r *siteRound) standardized() (*fl.Dataset, error) {
	st, data := r.start, r.s.cfg.Data
	dim := data.Dim()
	label := data.Task == fl.Regression && len(st.Mean) == dim+1
	if len(st.Mean) != dim && !label {
		return nil, fmt.Errorf("the round standardizes %d features, the data has %d", len(st.Mean), dim)
	}
	out := (&fl.Standardizer{Mean: st.Mean[:dim], Scale: st.Scale[:dim]}).Apply(data)
	if label {
		if !(st.Scale[dim] > 0) || math.IsInf(st.Scale[dim], 0) || math.IsInf(st.Mean[dim], 0) {
			return nil, fmt.Errorf("label scale %v", st.Scale[dim])
		}
		out = fl.ScaleLabels(out, st.Mean[dim], st.Scale[dim])
	}
	return out, nil
}

// step handles one engine message from the coordinator.
func (r *siteRound) step(e *wire.Engine) (*wire.SiteMessage, error) {
	st := r.start
	if st.Mode == string(HE) {
		return r.s.heStep(r, e)
	}
	switch e.Phase {
	case phaseAdvert:
		var m secagg.AdvertList
		if err := m.UnmarshalBinary(e.Payload); err != nil {
			return nil, err
		}
		out, err := r.client.ShareKeys(&m)
		if err != nil {
			return nil, err
		}
		b, _ := out.MarshalBinary()
		return engineMsg(st.Round, phaseShares, b), nil
	case phaseShares:
		var m secagg.ForwardedShares
		if err := m.UnmarshalBinary(e.Payload); err != nil {
			return nil, err
		}
		// Open and check everything received for this phase before paying:
		// a round that a bad share would abandon costs nothing.
		if err := r.client.OpenShares(&m); err != nil {
			return nil, err
		}
		// Charge this hospital's ledger before its data leaves, once per
		// session: a replayed request gets the same masked input back.
		if r.charge != nil && !r.charged {
			if err := r.s.charge(*r.charge); err != nil {
				return nil, err
			}
			r.charged = true
		}
		out, err := r.client.MaskInput(&m, r.input)
		if err != nil {
			return nil, err
		}
		b, _ := out.MarshalBinary()
		return engineMsg(st.Round, phaseMasked, b), nil
	case phaseMasked:
		var m secagg.ConsistencyRequest
		if err := m.UnmarshalBinary(e.Payload); err != nil {
			return nil, err
		}
		var statistics []int
		if st.Kind == wire.RoundStart_STATISTICS {
			sites := make([]int, 0, len(m.Survivors))
			for _, id := range m.Survivors {
				if id < 1 || int(id) > len(st.Members) {
					return nil, fmt.Errorf("survivor %d out of range [1, %d]", id, len(st.Members))
				}
				sites = append(sites, int(st.Members[id-1]))
			}
			slices.Sort(sites)
			if len(sites) < r.floor {
				return nil, fmt.Errorf("statistics over %d sites; this site's minimum cohort is %d", len(sites), r.floor)
			}
			if prev := r.s.state.Statistics; prev != nil && !slices.Equal(prev, sites) {
				return nil, fmt.Errorf("the statistics were already opened over sites %v; this site signs no other set (asked for %v)", prev, sites)
			}
			statistics = sites
		}
		out, err := r.client.CheckConsistency(&m)
		if err != nil {
			return nil, err
		}
		if statistics != nil {
			// Recorded on disk before the signature leaves.
			if err := r.s.signStatistics(statistics); err != nil {
				return nil, err
			}
		}
		b, _ := out.MarshalBinary()
		return engineMsg(st.Round, phaseConsistency, b), nil
	case phaseConsistency:
		var m secagg.UnmaskRequest
		if err := m.UnmarshalBinary(e.Payload); err != nil {
			return nil, err
		}
		// The shares open the sum this site paid for: only once it has
		// cosigned a checkpoint of the coordinator's ledger that holds the
		// session's charge.
		if err := r.chargeWitnessed(); err != nil {
			return nil, err
		}
		out, err := r.client.Unmask(&m)
		if err != nil {
			return nil, err
		}
		if r.charge != nil {
			// Every survivor signed and this site reveals its shares: the
			// sum it paid for can now be opened. Only this, never the
			// coordinator's word, resets the count of unopened rounds.
			r.settled = true
			r.s.opened()
		}
		b, _ := out.MarshalBinary()
		return engineMsg(st.Round, phaseUnmask, b), nil
	}
	return nil, fmt.Errorf("unknown phase %d", e.Phase)
}

// noise checks the round's grid step (a power of two) and returns the
// sampler of this site's noise share on it (nil without noise).
func (r *siteRound) noise() (*dp.DiscreteGaussian, error) {
	st := r.start
	if st.Gamma <= 0 || math.Log2(st.Gamma) != math.Trunc(math.Log2(st.Gamma)) {
		return nil, fmt.Errorf("grid step %v is not a power of two", st.Gamma)
	}
	if st.Gamma > 0x1p64 {
		// quantize clamps to ±2^61 grid steps, which must stay finite
		// (TestAttackHugeGridInfSumRefuses).
		return nil, fmt.Errorf("grid step %v is above 2^64", st.Gamma)
	}
	if st.SiteSigma > 0 {
		return dp.NewDiscreteGaussianSigma(st.SiteSigma / st.Gamma)
	}
	return nil, nil
}

// quantize rounds v to the round's grid and adds this site's noise share.
func (r *siteRound) quantize(v []float64) ([]uint64, error) {
	st := r.start
	// Everything that can refuse the round is checked first, on public
	// values: the grid and the noise, then (below) nothing that depends
	// on v.
	g, err := r.noise()
	if err != nil {
		return nil, err
	}
	// Each coordinate is clamped to ±2^61·γ, which the grid and the noise
	// hold in an int64: a coordinator's tiny γ would otherwise make
	// rounding fail on the first large coordinate, and the refusal would
	// tell it, without a charge, which coordinate of the un-noised update
	// passed a threshold of its choice (TestAttackGridStepProbesUpdate).
	// Clamping to a box is the projection onto a closed convex set, which
	// is nonexpansive in L2 (Bauschke and Combettes, Convex Analysis and
	// Monotone Operator Theory, 2nd ed., Prop. 4.16), so one record (or
	// one site) still moves the input by at most the clip.
	bound := math.Ldexp(st.Gamma, 61)
	c := make([]float64, len(v))
	for i, x := range v {
		if math.IsNaN(x) {
			// Only a sum of records overflowing both ways, at a clip near
			// the largest float, where the bound is far below the clip.
			x = 0
		}
		c[i] = max(-bound, min(bound, x))
	}
	ints, err := dp.Round(r.s.sampler, c, st.Gamma, math.Inf(1))
	if err != nil {
		return nil, err
	}
	mask := ^uint64(0)
	if st.Bits < 64 {
		mask = 1<<st.Bits - 1
	}
	out := make([]uint64, len(ints))
	for i, x := range ints {
		if g != nil {
			x += g.Sample(r.s.sampler)
		}
		out[i] = uint64(x) & mask
	}
	return out, nil
}

// writeModel replaces path with the global model, durably and
// unencrypted (the model is what the federation publishes): .npy as a
// flat vector, else safetensors with the layout's named tensors. Beside
// it, path + ".layout.json" holds the manifest (layout and
// standardization) that using the model needs, when the last training
// round this site saw gives them.
func writeModel(path string, w []float64, round int, last *wire.RoundStart, hidden int) error {
	var man *fl.Manifest
	if last != nil && int(last.Length) == len(w) {
		if l, _, err := roundLayout(last, hidden); err == nil {
			man = manifestFor(l, round, last.Mean, last.Scale)
		}
	}
	var buf bytes.Buffer
	var err error
	switch {
	case filepath.Ext(path) == ".npy":
		err = fl.WriteNPY(&buf, w, false)
	case man != nil:
		var ts map[string]fl.Tensor
		if ts, err = man.Split(w); err == nil {
			err = fl.WriteSafetensors(&buf, ts, map[string]string{"round": fmt.Sprint(round), "model": man.Model})
		}
	default:
		err = fl.WriteSafetensors(&buf, map[string]fl.Tensor{"model": {DType: "F64", Shape: []int{len(w)}, Data: w}}, map[string]string{"round": fmt.Sprint(round)})
	}
	if err != nil {
		return err
	}
	if man != nil {
		var mb bytes.Buffer
		if err := fl.WriteManifest(&mb, man); err != nil {
			return err
		}
		if err := atrest.WriteFile(path+".layout.json", mb.Bytes(), 0o644, atrest.Passphrase{}); err != nil {
			return err
		}
	}
	return atrest.WriteFile(path, buf.Bytes(), 0o644, atrest.Passphrase{})
}
