package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fl-secure/fl-secure/protocol/wire"
)

// An in-memory transport: a Coordinator and its Sites run a federation in
// one process, without gRPC or TLS, through the same round code as over
// the network. Only authentication differs: the site of an in-memory
// session is the one named to ConnectInMemory, as the certificate names it
// on gRPC. Everything after it is Coordinator.serve and Site.converse, the
// code the gRPC session runs: the Hello must name the site, every message
// is attributed to it, and MaxBuffered bounds what it can make the
// coordinator hold.
//
// The streams behave as gRPC's do for this protocol: messages are copied
// through their wire encoding (no memory is shared between the two ends,
// and a message over MaxMessage is refused with ResourceExhausted); a
// site's Recv returns what the coordinator sent before its session ended,
// then io.EOF or the status the session ended with; a Send after the end
// returns io.EOF on the site's end; the site's Close, the caller's context
// or the coordinator's Stop cancel the session at both ends (codes.Canceled).

// memBuffer is how many messages each direction holds before Send waits.
const memBuffer = 16

// A SiteStream is a site's end of a session: ConnectInMemory returns one,
// and Site.RunOn runs the site's side of the protocol over it.
type SiteStream interface {
	Send(*wire.SiteMessage) error
	Recv() (*wire.CoordinatorMessage, error)
	// Close ends the session at both ends, as cancelling a gRPC call does.
	Close()
}

// memSessions are a coordinator's in-memory sessions.
type memSessions struct {
	mu      sync.Mutex
	stopped bool
	ctx     context.Context // cancelled by Stop: ends every session
	cancel  context.CancelFunc
	wg      sync.WaitGroup // running sessions
}

func (m *memSessions) init() { m.ctx, m.cancel = context.WithCancel(context.Background()) }

// add counts a new session, unless the coordinator has stopped accepting.
func (m *memSessions) add() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return false
	}
	m.wg.Add(1)
	return true
}

// drain accepts no more sessions and waits for the running ones to end.
func (m *memSessions) drain() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.wg.Wait()
}

// stop accepts no more sessions and ends the running ones.
func (m *memSessions) stop() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.cancel()
}

// A memPipe is one in-memory session.
type memPipe struct {
	// ctx is the call: cancelled by the site's Close, the caller's
	// context or the coordinator's Stop.
	ctx    context.Context
	cancel context.CancelFunc
	// srvCtx is the coordinator's end: cancelled with ctx, and when the
	// coordinator's side of the session has returned.
	srvCtx    context.Context
	srvCancel context.CancelFunc
	unstop    func() bool // detaches ctx from the coordinator's Stop
	up        chan *wire.SiteMessage
	down      chan *wire.CoordinatorMessage
	done      chan struct{} // closed when the coordinator's side returned
	err       error         // its status, set before done is closed
}

func newMemPipe(ctx, stop context.Context) *memPipe {
	p := &memPipe{up: make(chan *wire.SiteMessage, memBuffer), down: make(chan *wire.CoordinatorMessage, memBuffer), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.unstop = context.AfterFunc(stop, p.cancel)
	p.srvCtx, p.srvCancel = context.WithCancel(p.ctx)
	return p
}

// finish ends the coordinator's side with err, as a gRPC handler's return
// does: the site reads what was sent, then the status.
func (p *memPipe) finish(err error) {
	if err != nil {
		p.err = status.Convert(err).Err()
	}
	close(p.done)
	p.srvCancel()
	p.unstop()
}

// cancelled is the error a stream returns once ctx is cancelled.
func cancelled(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }

// transfer copies m through its wire encoding, bounded by MaxMessage.
func transfer[T any, M interface {
	*T
	proto.Message
}](m M) (M, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "protocol: encoding a message: %v", err)
	}
	if len(b) > MaxMessage {
		return nil, status.Errorf(codes.ResourceExhausted, "protocol: a message of %d bytes is over the limit of %d", len(b), MaxMessage)
	}
	out := M(new(T))
	if err := proto.Unmarshal(b, out); err != nil {
		return nil, status.Errorf(codes.Internal, "protocol: decoding a message: %v", err)
	}
	return out, nil
}

// memSiteStream is the site's end of a memPipe.
type memSiteStream struct{ p *memPipe }

func (s memSiteStream) Send(m *wire.SiteMessage) error {
	p := s.p
	select {
	case <-p.done:
		return io.EOF
	default:
	}
	if p.ctx.Err() != nil {
		return io.EOF
	}
	cp, err := transfer(m)
	if err != nil {
		return err
	}
	select {
	case p.up <- cp:
		return nil
	case <-p.done:
		return io.EOF
	case <-p.ctx.Done():
		return io.EOF
	}
}

func (s memSiteStream) Recv() (*wire.CoordinatorMessage, error) {
	p := s.p
	if p.ctx.Err() != nil {
		return nil, cancelled(p.ctx)
	}
	select {
	case m := <-p.down:
		return m, nil
	default:
	}
	select {
	case m := <-p.down:
		return m, nil
	case <-p.done:
		// Everything sent is in down by now.
		select {
		case m := <-p.down:
			return m, nil
		default:
		}
		if p.err != nil {
			return nil, p.err
		}
		return nil, io.EOF
	case <-p.ctx.Done():
		return nil, cancelled(p.ctx)
	}
}

func (s memSiteStream) Close() { s.p.cancel() }

// memCoordStream is the coordinator's end of a memPipe.
type memCoordStream struct{ p *memPipe }

func (s memCoordStream) Context() context.Context { return s.p.srvCtx }

func (s memCoordStream) Send(m *wire.CoordinatorMessage) error {
	p := s.p
	if p.srvCtx.Err() != nil {
		return cancelled(p.srvCtx)
	}
	cp, err := transfer(m)
	if err != nil {
		return err
	}
	select {
	case p.down <- cp:
		return nil
	case <-p.srvCtx.Done():
		return cancelled(p.srvCtx)
	}
}

func (s memCoordStream) Recv() (*wire.SiteMessage, error) {
	p := s.p
	if p.srvCtx.Err() != nil {
		return nil, cancelled(p.srvCtx)
	}
	select {
	case m := <-p.up:
		return m, nil
	case <-p.srvCtx.Done():
		return nil, cancelled(p.srvCtx)
	}
}

// ConnectInMemory opens a session of site with this coordinator inside
// this process and returns the site's end, for Site.RunOn. The caller
// authenticates the site by naming it, as its certificate does on gRPC, so
// only code that may act as any site should hold the coordinator; from
// the Hello on, the session is the gRPC session's code (see serve). The
// session ends when the site's end is closed, ctx ends, the coordinator
// ends it, or Stop.
func (c *Coordinator) ConnectInMemory(ctx context.Context, site int) (SiteStream, error) {
	if !c.cfg.Roster.has(site) {
		return nil, status.Errorf(codes.PermissionDenied, "protocol: site %d is not on the roster", site)
	}
	if !c.mem.add() {
		return nil, status.Error(codes.Unavailable, "protocol: the coordinator has stopped")
	}
	p := newMemPipe(ctx, c.mem.ctx)
	go func() {
		defer c.mem.wg.Done()
		p.finish(c.serve(memCoordStream{p}, site))
	}()
	return memSiteStream{p}, nil
}

// has reports whether site is on the roster.
func (r *Roster) has(site int) bool {
	for _, s := range r.Sites {
		if s.ID == site {
			return true
		}
	}
	return false
}

// RunOn runs this site's side of one session over stream, in this
// process (see ConnectInMemory): the same code as a session of Run, with
// no dialling and no reconnection. It closes stream when it returns: nil
// after the coordinator's goodbye, ctx's error once ctx ends, otherwise
// why the session ended (wrapping a refusal of the site's identity before
// the Welcome as Run does).
func (s *Site) RunOn(ctx context.Context, stream SiteStream) error {
	defer stream.Close()
	stop := context.AfterFunc(ctx, stream.Close)
	defer stop()
	err := s.converse(stream)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errGoodbye) {
		return nil
	}
	if err == nil {
		return fmt.Errorf("protocol: site %d: session ended", s.cfg.Site)
	}
	return err
}
