package ai

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxEventSize bounds one server-sent event (its data lines together).
const MaxEventSize = 1 << 20

// ErrEventTooLarge is returned for an event larger than MaxEventSize.
var ErrEventTooLarge = errors.New("ai: server-sent event larger than 1MiB")

// EventReader reads server-sent events (the text/event-stream format of the HTML standard,
// section 9.2) as they arrive: each call to Next returns as soon as the blank line ending an
// event was read, with nothing buffered ahead of it beyond what the reader already has.
type EventReader struct {
	r    *bufio.Reader
	data []byte
}

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{r: bufio.NewReaderSize(r, 4096)}
}

// Next returns the data of the next event (its data lines joined by "\n"); the slice is valid
// until the next call. Comments, ids, event names and retry fields are skipped. At the end of
// the stream it returns io.EOF; an event cut short by the end is returned first.
func (e *EventReader) Next() ([]byte, error) {
	e.data = e.data[:0]
	have := false
	for {
		line, err := e.readLine()
		if err != nil {
			if err == io.EOF && have {
				return e.data, nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if have {
				return e.data, nil
			}
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte{' '})
		}
		if string(field) != "data" {
			continue
		}
		if have {
			e.data = append(e.data, '\n')
		}
		if len(e.data)+len(value) > MaxEventSize {
			return nil, ErrEventTooLarge
		}
		e.data = append(e.data, value...)
		have = true
	}
}

// readLine reads one line without its CR, LF or CRLF ending.
func (e *EventReader) readLine() ([]byte, error) {
	var long []byte
	for {
		frag, err := e.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(long)+len(frag) > MaxEventSize {
				return nil, ErrEventTooLarge
			}
			long = append(long, frag...)
			continue
		}
		if err != nil && len(frag) == 0 && len(long) == 0 {
			return nil, err
		}
		if long != nil {
			frag = append(long, frag...)
		}
		frag = bytes.TrimSuffix(frag, []byte{'\n'})
		frag = bytes.TrimSuffix(frag, []byte{'\r'})
		return frag, nil
	}
}

// eventScanner watches a byte stream of server-sent events passing through, without holding
// it up: Write takes each chunk after it was forwarded and calls fn for every complete data
// field. A line longer than MaxEventSize is skipped.
type eventScanner struct {
	line []byte
	skip bool
	fn   func(data []byte)
}

func (s *eventScanner) Write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if !s.skip {
				if len(s.line)+len(p) > MaxEventSize {
					s.skip, s.line = true, s.line[:0]
				} else {
					s.line = append(s.line, p...)
				}
			}
			return
		}
		part := p[:i]
		p = p[i+1:]
		if s.skip {
			s.skip = false
			continue
		}
		line := part
		if len(s.line) > 0 {
			s.line = append(s.line, part...)
			line = s.line
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			s.fn(bytes.TrimPrefix(v, []byte{' '}))
		}
		s.line = s.line[:0]
	}
}
