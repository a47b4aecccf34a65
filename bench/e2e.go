package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fl-secure/fl-secure/dp"
	"github.com/fl-secure/fl-secure/protocol"
)

func tempDir() (string, error) { return os.MkdirTemp("", "fl-secure-bench-*") }

// e2eRound runs client-level rounds over gRPC with mutual TLS on loopback,
// all sites in this process, and reports milliseconds per round and bytes
// each site sends per round (training rounds after the first).
func e2eRound(name string, mode protocol.Mode, n, d int) ([]Result, error) {
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := protocol.Provision(dir, n, nil); err != nil {
		return nil, err
	}
	roster, err := protocol.LoadRoster(filepath.Join(dir, "coordinator", "roster.json"))
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const rounds = 4
	var stamps []time.Time
	var bytesAt []int64
	var sites []*protocol.Site
	cd := filepath.Join(dir, "coordinator")
	c, err := protocol.NewCoordinator(protocol.CoordinatorConfig{
		Cert: filepath.Join(cd, "cert.pem"), Key: filepath.Join(cd, "key.pem"), CA: filepath.Join(dir, "ca.pem"), Roster: roster,
		Mode: mode, Level: dp.ClientLevel, Rounds: rounds, Clip: 1, LearningRate: 1, Model: "linear", Features: d - 1,
		PublicStatistics: true, // the sites send updates: nothing to standardize
		PhaseTimeout:     2 * time.Minute, JoinWait: 10 * time.Second, State: filepath.Join(cd, "state"), Logger: quiet,
		Progress: func(protocol.RoundResult) {
			stamps = append(stamps, time.Now())
			var b int64
			for _, s := range sites {
				b += s.BytesSent()
			}
			bytesAt = append(bytesAt, b)
		},
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go c.Serve(lis)
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= n; i++ {
		sd := filepath.Join(dir, fmt.Sprintf("site-%d", i))
		pin, _ := os.ReadFile(filepath.Join(sd, "coordinator.pin"))
		u := make([]float64, d)
		for k := range u {
			u[k] = rng.NormFloat64() * 1e-3
		}
		s, err := protocol.NewSite(protocol.SiteConfig{Site: i, Coordinator: lis.Addr().String(), ServerName: "localhost",
			Cert: filepath.Join(sd, "cert.pem"), Key: filepath.Join(sd, "key.pem"), Identity: filepath.Join(sd, "identity.pem"),
			CA: filepath.Join(sd, "ca.pem"), Pin: strings.TrimSpace(string(pin)), Roster: roster, AllowNoDP: true, AllowPlain: true, MinCohort: 3,
			Update: u, State: filepath.Join(sd, "state"), Logger: quiet})
		if err != nil {
			return nil, err
		}
		defer s.Close()
		sites = append(sites, s)
		go s.Run(ctx)
	}
	if _, err := c.Run(ctx); err != nil {
		return nil, err
	}
	if len(stamps) != rounds {
		return nil, fmt.Errorf("%d of %d rounds completed", len(stamps), rounds)
	}
	per := stamps[rounds-1].Sub(stamps[0]) / (rounds - 1)
	bytes := float64(bytesAt[rounds-1]-bytesAt[0]) / float64(n) / float64(rounds-1)
	params := map[string]float64{"n": float64(n), "d": float64(d)}
	return []Result{
		{Scenario: "e2e", Case: name, Params: params, Metric: "round time", Unit: "ms", Value: float64(per.Microseconds()) / 1000},
		{Scenario: "e2e", Case: name, Params: params, Metric: "bytes per site", Unit: "B", Value: bytes, Baseline: float64(4 * d), Ratio: bytes / float64(4*d)},
	}, nil
}
