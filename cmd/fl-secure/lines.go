package main

import (
	"bytes"
	"sync"
)

// maxLine bounds a line of a child process's output.
const maxLine = 64 << 10

// A lineWriter splits what a process writes into lines for emit (a line
// longer than maxLine bytes is cut) and keeps the last pocTail of them.
// Used as a command's Stdout and Stderr, it may be called from two
// goroutines at once.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	tail []string
	emit func(string)
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.add(string(bytes.TrimRight(l.buf[:i], "\r")))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > maxLine {
		// A process that never ends its line is cut, not buffered
		// without bound.
		l.add(string(l.buf))
		l.buf = nil
	}
	return len(b), nil
}

// flush emits a last line the process did not end.
func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.add(string(l.buf))
		l.buf = nil
	}
}

func (l *lineWriter) add(line string) {
	l.tail = append(l.tail, line)
	if len(l.tail) > pocTail {
		l.tail = l.tail[len(l.tail)-pocTail:]
	}
	l.emit(line)
}

// last returns the process's last lines.
func (l *lineWriter) last() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tail...)
}
