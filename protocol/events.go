package protocol

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
	"unicode/utf8"
)

// An EventLog appends the coordinator's events to a file as JSON lines,
// one object per line, for a dashboard or a SIEM to read. Every line is
// written with one write(2) on a file opened O_APPEND and fsynced before
// the coordinator goes on, so an event that was logged survives a crash
// and a reader never sees a torn line followed by more events.
//
// Every object has "time" (RFC 3339 with nanoseconds, UTC) and "event";
// the other fields are present only where they mean something:
//
//	event               fields
//	run_started         rounds, sites, mode, level, epsilon, delta (the plan)
//	site_joined         site
//	site_left           site, reason ("disconnected", "replaced", "flooding")
//	site_refused        site, round, phase, reason (round 0 without a
//	                    phase: the plan, at join)
//	round_started       round, attempt, sites (the cohort)
//	round_opened        round, participants, epsilon (spent after it)
//	round_failed        round, status, participants, epsilon, reason
//	round_skipped       round, status ("budget-refused"), epsilon
//	phase_timeout       round, phase, sites (those that did not answer)
//	checkpoint_written  round, file, epsilon
//	checkpoint_pruned   round, file
//	run_finished        rounds (opened), epsilon
//
// Round 0 is the statistics release (and in mode he the key ceremony).
// Sites are roster ids. ε values are the coordinator ledger's spend, the
// numbers its log and its ledger already show; no event carries a key,
// a passphrase or a value derived from the sites' data beyond the
// released, noised results' ε. docs/EVENTS.md has examples.
type EventLog struct {
	mu  sync.Mutex
	f   *os.File
	err error // the first write error, reported once
	now func() time.Time
}

// Event is one line of an EventLog.
type Event struct {
	Time         time.Time `json:"time"`
	Event        string    `json:"event"`
	Site         int       `json:"site,omitempty"`
	Round        *int      `json:"round,omitempty"`
	Attempt      int       `json:"attempt,omitempty"`
	Phase        string    `json:"phase,omitempty"`
	Status       string    `json:"status,omitempty"`
	Participants int       `json:"participants,omitempty"`
	Sites        []int     `json:"sites,omitempty"`
	Epsilon      *float64  `json:"epsilon,omitempty"`
	Delta        float64   `json:"delta,omitempty"`
	Rounds       int       `json:"rounds,omitempty"`
	Mode         string    `json:"mode,omitempty"`
	Level        string    `json:"level,omitempty"`
	File         string    `json:"file,omitempty"`
	Reason       string    `json:"reason,omitempty"`
}

// OpenEventLog opens path for appending events, creating it (mode 0640)
// if it does not exist. Events already in it are kept.
func OpenEventLog(path string) (*EventLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("protocol: event log: %w", err)
	}
	return &EventLog{f: f, now: time.Now}, nil
}

// Close closes the file. It reports the first error any event met.
func (l *EventLog) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.f.Close()
	if l.err != nil {
		return l.err
	}
	return err
}

// emit appends e, stamped with the time. It returns the write error, if
// any; the coordinator logs it and goes on (an event log that fails must
// not stop a federation whose ledger is sound).
func (l *EventLog) emit(e Event) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Time = l.now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err = l.f.Write(b); err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		err = fmt.Errorf("protocol: event log %s: %w", l.f.Name(), err)
		if l.err == nil {
			l.err = err
		}
	}
	return err
}

func intp(n int) *int           { return &n }
func floatp(x float64) *float64 { return &x }

// event records e in the event log, if there is one; a write error is
// logged once, and the run goes on.
func (c *Coordinator) event(e Event) {
	if err := c.cfg.Events.emit(e); err != nil && c.eventErr.CompareAndSwap(false, true) {
		c.log.Error("the event log could not be written; events are lost until it can", "err", err)
	}
}

// truncate shortens s to at most n bytes (on a rune boundary), marking
// the cut, so that a site cannot fill the coordinator's log or event
// file with one refusal.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
