package h2

import (
	"sync"
	"time"
)

// workerIdle is how long a handler goroutine waits for another stream before it exits.
// Reusing goroutines keeps the stacks that handlers grew, instead of growing a fresh one
// per stream.
const workerIdle = 5 * time.Second

// workerPool runs stream handlers on reused goroutines. The number of goroutines is bounded
// by the streams running at once, which each connection bounds by MaxConcurrentStreams;
// idle ones exit after between workerIdle and twice that.
type workerPool struct {
	mu      sync.Mutex
	idle    []*worker // most recently idle last
	gen     uint64    // sweeps done
	sweeper *time.Timer
	armed   bool
}

type worker struct {
	ch  chan *stream // nil stops the worker
	gen uint64       // pool.gen when it became idle
}

// run serves s on an idle worker, or on a new one.
func (p *workerPool) run(s *stream) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.ch <- s
		return
	}
	p.mu.Unlock()
	go p.loop(&worker{ch: make(chan *stream, 1)}, s)
}

func (p *workerPool) loop(w *worker, s *stream) {
	for s != nil {
		s = s.c.runHandlers(s)
		p.mu.Lock()
		w.gen = p.gen
		p.idle = append(p.idle, w)
		if !p.armed {
			p.armed = true
			if p.sweeper == nil {
				p.sweeper = time.AfterFunc(workerIdle, p.sweep)
			} else {
				p.sweeper.Reset(workerIdle)
			}
		}
		p.mu.Unlock()
		s = <-w.ch
	}
}

// sweep stops the workers that stayed idle since the previous sweep.
func (p *workerPool) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := 0
	for _, w := range p.idle {
		if w.gen < p.gen {
			w.ch <- nil
			continue
		}
		p.idle[keep] = w
		keep++
	}
	clear(p.idle[keep:])
	p.idle = p.idle[:keep]
	p.gen++
	p.armed = len(p.idle) > 0
	if p.armed {
		p.sweeper.Reset(workerIdle)
	}
}
