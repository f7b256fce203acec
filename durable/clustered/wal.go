package clustered

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// The SQLite write-ahead log format (https://www.sqlite.org/fileformat.html, section 4):
// a 32-byte header, then frames of a 24-byte header and one page. A frame whose "database
// size" field is non-zero ends a transaction (a commit frame). Frames belong to the current
// WAL generation when their salts equal the header's; when a checkpointed WAL is restarted
// the salts change and frames are written from the start again.
const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682
	walMagicBE         = 0x377f0683
)

// WALPosition is how far a reader has taken the WAL: the offset after the last commit frame
// read, in the generation the salts identify.
type WALPosition struct {
	Offset       int64
	Salt1, Salt2 uint32
}

// Page is one database page image.
type Page struct {
	// No is the page number, from 1.
	No uint32
	// Data is the page's content.
	Data []byte
}

// WALDelta is the physical effect of the transactions committed since a position: the
// last image of every page they wrote, and the database size after the last of them.
type WALDelta struct {
	// PageSize is the database's page size.
	PageSize int
	// Pages are the changed pages in page-number order.
	Pages []Page
	// DBPages is the database size in pages after the last commit; zero when Pages is
	// empty.
	DBPages uint32
}

// ReadWAL returns the transactions committed to the WAL at path since pos and the new
// position. The caller is the database's only writer and calls it between transactions
// (under the object's gate, after Commit), so every frame up to the last commit frame is
// complete; frames after it (none, then) are left for the next call. A missing or empty
// WAL yields an empty delta.
func ReadWAL(path string, pos WALPosition) (WALDelta, WALPosition, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return WALDelta{}, WALPosition{}, nil
	}
	if err != nil {
		return WALDelta{}, pos, fmt.Errorf("durable: read wal: %w", err)
	}
	defer f.Close()
	var hdr [walHeaderSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		// Truncated by a checkpoint: nothing written since.
		return WALDelta{}, WALPosition{}, nil
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != walMagicLE && magic != walMagicBE {
		return WALDelta{}, pos, fmt.Errorf("durable: read wal %s: bad magic %#x", path, magic)
	}
	pageSize := int(binary.BigEndian.Uint32(hdr[8:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return WALDelta{}, pos, fmt.Errorf("durable: read wal %s: bad page size %d", path, pageSize)
	}
	salt1, salt2 := binary.BigEndian.Uint32(hdr[16:]), binary.BigEndian.Uint32(hdr[20:])
	off := pos.Offset
	if salt1 != pos.Salt1 || salt2 != pos.Salt2 || off < walHeaderSize {
		off = walHeaderSize // a new generation: read it from its first frame
	}
	next := WALPosition{Offset: off, Salt1: salt1, Salt2: salt2}
	frame := make([]byte, walFrameHeaderSize+pageSize)
	pending := map[uint32][]byte{}
	changed := map[uint32][]byte{}
	var dbPages uint32
	for {
		if _, err := f.ReadAt(frame, off); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return WALDelta{}, pos, fmt.Errorf("durable: read wal: %w", err)
		}
		if binary.BigEndian.Uint32(frame[8:]) != salt1 || binary.BigEndian.Uint32(frame[12:]) != salt2 {
			break // a frame of an earlier generation: the end of this one
		}
		no := binary.BigEndian.Uint32(frame[0:])
		pending[no] = append([]byte(nil), frame[walFrameHeaderSize:]...)
		off += int64(len(frame))
		if size := binary.BigEndian.Uint32(frame[4:]); size != 0 {
			for k, v := range pending {
				changed[k] = v
			}
			clear(pending)
			dbPages = size
			next.Offset = off
		}
	}
	d := WALDelta{PageSize: pageSize, DBPages: dbPages}
	for no, data := range changed {
		if no <= dbPages {
			d.Pages = append(d.Pages, Page{No: no, Data: data})
		}
	}
	sort.Slice(d.Pages, func(i, j int) bool { return d.Pages[i].No < d.Pages[j].No })
	return d, next, nil
}

// ApplyWAL writes a delta into the database file at path, which SQLite does not have open:
// each page at its place, the file cut to the database size, then synced. Applied in order
// to a copy of the database as it was at the delta's starting position, the deltas make it
// the database as committed.
func ApplyWAL(path string, d WALDelta) error { return applyWAL(path, d, true) }

// applyWAL is ApplyWAL, with the sync only when sync is set. The replicated store's local
// files need none: the log is what survives a crash, and Open rebuilds them from it.
func applyWAL(path string, d WALDelta, sync bool) (err error) {
	if len(d.Pages) == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("durable: apply wal: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("durable: apply wal: %w", cerr)
		}
	}()
	for _, p := range d.Pages {
		if len(p.Data) != d.PageSize || p.No == 0 {
			return fmt.Errorf("durable: apply wal: page %d of %d bytes, want %d", p.No, len(p.Data), d.PageSize)
		}
		if _, err := f.WriteAt(p.Data, int64(p.No-1)*int64(d.PageSize)); err != nil {
			return fmt.Errorf("durable: apply wal: %w", err)
		}
	}
	if err := f.Truncate(int64(d.DBPages) * int64(d.PageSize)); err != nil {
		return fmt.Errorf("durable: apply wal: %w", err)
	}
	if !sync {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("durable: apply wal: %w", err)
	}
	return nil
}
