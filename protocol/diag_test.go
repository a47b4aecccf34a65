package protocol

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fl-secure/fl-secure/internal/atrest"
	"github.com/fl-secure/fl-secure/protocol/wire"
)

// captureLog collects a logger's text output for a test to read.
type captureLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *captureLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *captureLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *captureLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the log lines that hold every one of parts.
func (l *captureLog) lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// newLoggedFederation is newFederation with a coordinator whose log the
// test reads.
func newLoggedFederation(t *testing.T, n int, cfg CoordinatorConfig) (*federation, *captureLog) {
	t.Helper()
	f := newFederation(t, n, cfg)
	f.coord.Stop()
	logs := &captureLog{}
	cfg = f.coord.cfg
	cfg.Logger = logs.logger()
	c, err := NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go c.Serve(lis)
	t.Cleanup(c.Stop)
	f.coord, f.addr = c, lis.Addr().String()
	return f, logs
}

// rawSession opens a session with site i's kit, sends its Hello and reads
// the Welcome: a client the test drives message by message, as a
// misbehaving site would.
func rawSession(t *testing.T, ctx context.Context, f *federation, i int) wire.Coordinator_SessionClient {
	t.Helper()
	sc := f.siteConfig(i)
	tc, err := clientTLS(sc.Cert, sc.Key, sc.CA, sc.Pin, "localhost", sc.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := wire.NewCoordinatorClient(conn).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&wire.SiteMessage{Body: &wire.SiteMessage_Hello{Hello: &wire.Hello{Site: uint32(i), Version: wireVersion}}}); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || m.GetWelcome() == nil {
		t.Fatalf("no welcome for site %d: %v %v", i, m, err)
	}
	return stream
}

// waitUntil polls cond every few milliseconds for at most d.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A site that floods the coordinator with messages no phase reads gets no
// more than MaxBuffered bytes held for it: its session is closed, the
// coordinator logs it as misbehaving, and what it sent is never processed.
func TestFloodingSiteIsCut(t *testing.T) {
	const budget = 1 << 20
	f, logs := newLoggedFederation(t, 3, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1, MaxBuffered: budget, PhaseTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := rawSession(t, ctx, f, 1)
	sess := f.coord.connected()
	if len(sess) != 1 || sess[0].site != 1 {
		t.Fatalf("connected: %v", sess)
	}
	// 16 MiB in 64 KiB engine messages, while no phase reads any.
	go func() {
		for range 256 {
			if stream.Send(engineMsg(1, phaseAdvert, make([]byte, 64<<10))) != nil {
				return
			}
		}
	}()
	var peak int64
	waitUntil(3*time.Second, func() bool {
		peak = max(peak, f.coord.buffered(1))
		return len(f.coord.connected()) == 0
	})
	if peak > budget {
		t.Errorf("%d bytes held for one site, over its budget of %d", peak, budget)
	}
	if len(f.coord.connected()) != 0 {
		t.Error("the flooding site is still connected")
	}
	// A phase waiting for it neither receives its messages nor waits.
	start := time.Now()
	if got := f.coord.collect(ctx, sess, func(*wire.SiteMessage) bool { return true }); len(got) != 0 {
		t.Errorf("a phase received %d messages from the flooding site", len(got))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the phase waited %v for a closed session", d)
	}
	if r := f.coord.Misbehaviour()[1]; len(r) == 0 || !strings.Contains(r[0], "flooding") {
		t.Errorf("misbehaviour of site 1: %q", r)
	}
	if len(logs.lines("site misbehaved", "site=1", "flooding")) == 0 {
		t.Errorf("no log line names the flooding site:\n%s", logs)
	}
}

// A message is attributed to the site whose certificate carried it: a
// Hello in the middle of a session renames nothing and is recorded as
// misbehaviour of the sender, never of the site it names.
func TestSenderBinding(t *testing.T) {
	f, logs := newLoggedFederation(t, 3, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1, PhaseTimeout: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := rawSession(t, ctx, f, 1)
	for _, m := range []*wire.SiteMessage{
		{Body: &wire.SiteMessage_Hello{Hello: &wire.Hello{Site: 2, Version: wireVersion}}},
		engineMsg(7, phaseAdvert, []byte("advert")),
	} {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	got := f.coord.collect(ctx, f.coord.connected(), engineFor(7, phaseAdvert))
	if len(got) != 1 || got[1] == nil {
		t.Fatalf("collected %v, want site 1's advert", got)
	}
	mis := f.coord.Misbehaviour()
	if len(mis[1]) != 1 || !strings.Contains(mis[1][0], "second Hello") || len(mis[2]) != 0 {
		t.Errorf("misbehaviour %v", mis)
	}
	if len(logs.lines("level=WARN", "site misbehaved", "site=1", "second Hello")) != 1 {
		t.Errorf("log:\n%s", logs)
	}

	// The helper the round logic calls: logged, tallied per site, bounded,
	// and reported as a copy.
	for i := range maxReasons + 5 {
		f.coord.misbehaved(3, fmt.Sprintf("engine message %d claims client 2", i))
	}
	mis = f.coord.Misbehaviour()
	if r := mis[3]; len(r) != maxReasons || r[len(r)-1] != fmt.Sprintf("engine message %d claims client 2", maxReasons+4) {
		t.Errorf("site 3: %d reasons, last %q", len(r), r[len(r)-1])
	}
	mis[3][0] = "changed"
	delete(mis, 1)
	if again := f.coord.Misbehaviour(); again[3][0] == "changed" || len(again[1]) != 1 {
		t.Error("Misbehaviour returned the coordinator's own map")
	}
	if len(logs.lines("level=WARN", "site misbehaved", "site=3", "claims client 2")) != maxReasons+5 {
		t.Errorf("misbehaviour of site 3 not logged each time")
	}
}

// coordinatorFiles returns the coordinator's certificate, key and CA files
// in a provisioned kit.
func coordinatorFiles(dir string) (cert, key, ca string) {
	cd := filepath.Join(dir, "coordinator")
	return filepath.Join(cd, "cert.pem"), filepath.Join(cd, "key.pem"), filepath.Join(dir, "ca.pem")
}

// handshake runs one TLS handshake between a server with config srv and
// site i of the kit in dir, and returns the server's error.
func handshake(t *testing.T, srv *tls.Config, dir string, i int) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			res <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		res <- conn.(*tls.Conn).Handshake()
	}()
	sd := filepath.Join(dir, fmt.Sprintf("site-%d", i))
	pin, _ := os.ReadFile(filepath.Join(sd, "coordinator.pin"))
	cc, err := clientTLS(filepath.Join(sd, "cert.pem"), filepath.Join(sd, "key.pem"), filepath.Join(sd, "ca.pem"), strings.TrimSpace(string(pin)), "localhost", atrest.Passphrase{})
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := tls.Dial("tcp", ln.Addr().String(), cc); err == nil {
		conn.Read(make([]byte, 1)) // TLS 1.3: the server's verdict arrives after the client's Finished
		conn.Close()
	}
	return <-res
}

// A handshake the coordinator refuses is logged with the certificate's
// subject, its fingerprint and the reason, for each kind of refusal.
func TestTLSRefusalLogged(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	if err := Provision(dir, 4, nil); err != nil {
		t.Fatal(err)
	}
	if err := Provision(other, 3, nil); err != nil {
		t.Fatal(err)
	}
	roster, err := LoadRoster(filepath.Join(dir, "coordinator", "roster.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Site 4 holds a certificate of this federation's CA that the
	// coordinator's roster no longer lists.
	short := &Roster{Sites: append([]RosterSite(nil), roster.Sites...)}
	short.Sites[3].CertHash = strings.Repeat("00", 32)
	fingerprint := func(dir string, i int) string {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("site-%d", i), "cert.pem"))
		blk, _ := pem.Decode(b)
		return certHash(blk.Bytes)[:16]
	}
	for _, tc := range []struct {
		name    string
		kit     string // the connecting site's kit
		site    int
		time    time.Time // the coordinator's clock; zero: now
		refused string    // in the logged reason; "": accepted
	}{
		{name: "on the roster", kit: dir, site: 1},
		{name: "another federation's kit", kit: other, site: 1, refused: "not issued by this federation's CA"},
		{name: "not on the roster", kit: dir, site: 4, refused: "not on the roster"},
		{name: "expired", kit: dir, site: 2, time: time.Now().AddDate(3, 0, 0), refused: "expired on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &captureLog{}
			cert, key, ca := coordinatorFiles(dir)
			srv, err := serverTLS(cert, key, ca, short, logs.logger(), atrest.Passphrase{})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.time.IsZero() {
				srv.Time = func() time.Time { return tc.time }
			}
			// The site trusts this coordinator whatever its kit: only the
			// coordinator's verdict is under test.
			sd := filepath.Join(tc.kit, fmt.Sprintf("site-%d", tc.site))
			if tc.kit != dir {
				b, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
				os.WriteFile(filepath.Join(sd, "ca.pem"), b, 0o644)
				p, _ := os.ReadFile(filepath.Join(dir, "site-1", "coordinator.pin"))
				os.WriteFile(filepath.Join(sd, "coordinator.pin"), p, 0o644)
			}
			err = handshake(t, srv, tc.kit, tc.site)
			lines := logs.lines("level=WARN", "TLS handshake refused")
			if tc.refused == "" {
				if err != nil || len(lines) != 0 {
					t.Fatalf("handshake: %v; log:\n%s", err, logs)
				}
				return
			}
			if err == nil {
				t.Fatal("the handshake succeeded")
			}
			want := []string{"TLS handshake refused", "remote=127.0.0.1:", fmt.Sprintf("cn=\"fl-secure site %d\"", tc.site),
				"fingerprint=" + fingerprint(tc.kit, tc.site), tc.refused}
			if len(logs.lines(want...)) != 1 {
				t.Errorf("want one log line with %q; log:\n%s", want, logs)
			}
		})
	}
}

// A site that the coordinator refuses, or that refuses the coordinator,
// stops after a few attempts with an error that says its kit does not
// match; a site that cannot reach the coordinator keeps trying.
func TestSiteStopsWhenRefused(t *testing.T) {
	f, logs := newLoggedFederation(t, 4, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	other := t.TempDir()
	if err := Provision(other, 3, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		site func() *Site
		log  string // in the coordinator's log
	}{
		{"certificate of another federation", func() *Site {
			c := f.siteConfig(1)
			od := filepath.Join(other, "site-1")
			c.Cert, c.Key = filepath.Join(od, "cert.pem"), filepath.Join(od, "key.pem")
			s, _ := NewSite(c)
			return s
		}, "not issued by this federation's CA"},
		{"pin of another coordinator", func() *Site {
			c := f.siteConfig(2)
			c.Pin = strings.Repeat("ab", 32)
			s, _ := NewSite(c)
			return s
		}, ""},
		{"Hello of another site", func() *Site {
			s, _ := NewSite(f.siteConfig(3))
			s.cfg.Site = 4
			return s
		}, "its Hello claims site 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s := tc.site()
			defer s.Close()
			s.log = logs.logger()
			err := s.Run(ctx)
			if ctx.Err() != nil || !errors.Is(err, errRefused) || !strings.Contains(err.Error(), "does not belong") {
				t.Fatalf("Run: %v (context: %v)\n%s", err, ctx.Err(), logs)
			}
			t.Log(err)
			if tc.log != "" && len(logs.lines("level=WARN", tc.log)) == 0 {
				t.Errorf("the coordinator's log does not say %q:\n%s", tc.log, logs)
			}
		})
	}
	t.Run("coordinator unreachable", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c := f.siteConfig(1)
		c.Coordinator = lis.Addr().String()
		lis.Close()
		s, err := NewSite(c)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// Attempts at 0, 0.2, 0.6 and 1.4 s: more than maxRefusals.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run: %v, want it to keep retrying until the context ends", err)
		}
	})
}

// While sites are missing, the coordinator says every few seconds how many
// it has and which it waits for.
func TestWaitingForSitesLogged(t *testing.T) {
	f, logs := newLoggedFederation(t, 4, CoordinatorConfig{Rounds: 1, Clip: 1, LearningRate: 1})
	if f.coord.waitLog != 5*time.Second {
		t.Errorf("default report interval %v", f.coord.waitLog)
	}
	f.coord.waitLog = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rawSession(t, ctx, f, 1)
	rawSession(t, ctx, f, 3)
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer wcancel()
	if _, err := f.coord.waitFor(wctx, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitFor: %v", err)
	}
	if n := len(logs.lines("level=INFO", `msg="waiting for sites: 2 of 4 (missing site-2, site-4)`, "have=2", "of=4")); n < 3 {
		t.Errorf("%d reports in 500 ms at 50 ms intervals; log:\n%s", n, logs)
	}
}

// Log lines name the training round, never the session identifier.
func TestRoundLogsShowTrainingRound(t *testing.T) {
	f, logs := newLoggedFederation(t, 5, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1, JoinWait: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		c := f.siteConfig(i)
		if i == 4 {
			c.EpsilonCap = 0.01 // refuses round 1
		}
		cfgs = append(cfgs, c)
	}
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wait()
	if okRounds(sum) != 1 {
		t.Errorf("rounds %+v", sum.Rounds)
	}
	if len(logs.lines(`msg="site refused"`, "site=4", "round=1 ")) == 0 {
		t.Errorf("no refusal logged with round=1:\n%s", logs)
	}
	for _, line := range logs.lines("round=") {
		for _, field := range strings.Fields(line) {
			if r, ok := strings.CutPrefix(field, "round="); ok && len(r) > 3 {
				t.Errorf("a session identifier in the log: %s", line)
			}
		}
	}
}

// A site that disconnects in the middle of a phase is a dropout at once:
// the round goes on without waiting for the phase timeout (60 s here).
func TestDisconnectedSiteIsDropoutAtOnce(t *testing.T) {
	f, logs := newLoggedFederation(t, 5, CoordinatorConfig{Rounds: 1, Epsilon: 3, Delta: 1e-5, Clip: 1, LearningRate: 1,
		PhaseTimeout: 60 * time.Second, JoinWait: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cfgs []SiteConfig
	for i := 1; i <= 5; i++ {
		c := f.siteConfig(i)
		if i == 2 {
			c.dropAt = phaseMasked + 1 // vanishes instead of sending its masked input
		}
		cfgs = append(cfgs, c)
	}
	begin := time.Now()
	_, wait := runSites(t, ctx, cfgs)
	sum, err := f.coord.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	cancel()
	wait()
	if okRounds(sum) != 1 || sum.Rounds[0].Participants != 4 {
		t.Errorf("rounds %+v", sum.Rounds)
	}
	if took > 10*time.Second {
		t.Errorf("the run took %v: the coordinator waited for a site that had left; log:\n%s", took, logs)
	}
}
