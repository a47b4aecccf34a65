package local

import (
	"testing"
)

// TestAuditCommandCheckpoints: the audit command of a ledger takes its key
// from the roster (the coordinator's, or site N's) when there is one, names
// every checkpoint given (the sites' copies of the coordinator's) and every
// witness to verify; a site's ledger gets none.
func TestAuditCommandCheckpoints(t *testing.T) {
	got := AuditCommand("c/coordinator-ledger.jsonl", AuditKey{Roster: "kits/coordinator/roster.json", Key: "KEY"},
		[]string{"site-1/coordinator.checkpoint", "site-3/coordinator.checkpoint"},
		[]string{"fl-secure/site/1=K1", "fl-secure/site/3=K3"})
	want := "fl-secure budget audit --ledger c/coordinator-ledger.jsonl --roster kits/coordinator/roster.json --coordinator" +
		" --checkpoint site-1/coordinator.checkpoint --checkpoint site-3/coordinator.checkpoint" +
		" --witness fl-secure/site/1=K1 --witness fl-secure/site/3=K3"
	if got != want {
		t.Errorf("coordinator:\n got %s\nwant %s", got, want)
	}
	if got, want := AuditCommand("site-1/site-ledger.jsonl", AuditKey{Roster: "r.json", Site: 1, Key: "KEY"}, nil, nil),
		"fl-secure budget audit --ledger site-1/site-ledger.jsonl --roster r.json --site 1"; got != want {
		t.Errorf("site:\n got %s\nwant %s", got, want)
	}
	if got, want := AuditCommand("site-1/site-ledger.jsonl", AuditKey{Key: "KEY"}, nil, nil),
		"fl-secure budget audit --ledger site-1/site-ledger.jsonl --key KEY"; got != want {
		t.Errorf("no roster:\n got %s\nwant %s", got, want)
	}
}
