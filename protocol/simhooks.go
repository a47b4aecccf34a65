package protocol

import "errors"

// simHooks are points where the deterministic fault simulator
// (sim_test.go) observes a coordinator or a site, and stops one dead as a
// crash would. They are unexported and nil outside tests: a nil *simHooks
// observes nothing and never stops anything.
type simHooks struct {
	// crash is called at each crash point, before and after every write to
	// the party's state directory (ledger charges, session and site state,
	// statistics, checkpoints) and before the coordinator publishes a
	// model; round is the training round concerned (0 if none). If it
	// returns true the party stops there: the write is not made (or not
	// followed by anything), and the party fails with errCrashed.
	crash func(point string, round int) bool
	// input records a site's quantized, noised secagg input for session
	// sid, once the site has joined the session.
	input func(sid uint64, site int, input []uint64)
	// opened records a secagg sum the coordinator opened: its session, ring
	// width, survivor set (roster numbers) and the raw sum.
	opened func(sid uint64, bits int, survivors []int, raw []uint64)
}

// errCrashed is the error of a party stopped at a crash point.
var errCrashed = errors.New("protocol: stopped at a simulated crash point")

// stop reports whether the party is to stop dead at point.
func (h *simHooks) stop(point string, round int) bool {
	return h != nil && h.crash != nil && h.crash(point, round)
}

// crashAt returns errCrashed if the party is to stop dead at point.
func (h *simHooks) crashAt(point string, round int) error {
	if h.stop(point, round) {
		return errCrashed
	}
	return nil
}

func (h *simHooks) recordInput(sid uint64, site int, input []uint64) {
	if h != nil && h.input != nil {
		h.input(sid, site, append([]uint64(nil), input...))
	}
}

func (h *simHooks) recordOpened(sid uint64, bits int, survivors []int, raw []uint64) {
	if h != nil && h.opened != nil {
		h.opened(sid, bits, append([]int(nil), survivors...), append([]uint64(nil), raw...))
	}
}
