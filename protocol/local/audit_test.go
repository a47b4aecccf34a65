package local

import (
	"testing"
)

// TestAuditCommandCheckpoints: the audit command of a ledger names every
// checkpoint given (the sites' copies of the coordinator's) and every
// witness to verify; a site's ledger gets none.
func TestAuditCommandCheckpoints(t *testing.T) {
	got := AuditCommand("c/coordinator-ledger.jsonl", "KEY", []string{"site-1/coordinator.checkpoint", "site-3/coordinator.checkpoint"},
		[]string{"fl-secure/site/1=K1", "fl-secure/site/3=K3"})
	want := "fl-secure budget audit --ledger c/coordinator-ledger.jsonl --key KEY" +
		" --checkpoint site-1/coordinator.checkpoint --checkpoint site-3/coordinator.checkpoint" +
		" --witness fl-secure/site/1=K1 --witness fl-secure/site/3=K3"
	if got != want {
		t.Errorf("coordinator:\n got %s\nwant %s", got, want)
	}
	if got, want := AuditCommand("site-1/site-ledger.jsonl", "KEY", nil, nil), "fl-secure budget audit --ledger site-1/site-ledger.jsonl --key KEY"; got != want {
		t.Errorf("site:\n got %s\nwant %s", got, want)
	}
}
