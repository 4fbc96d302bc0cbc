package worker_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// modelWithChatTemplate writes a copy of the test model whose GGUF header also carries
// tokenizer.chat_template = tmpl (the test model has none), and returns its path. The copy
// keeps the file name, so the worker serves it under the same model name.
func modelWithChatTemplate(t *testing.T, tmpl string) string {
	t.Helper()
	src, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	out, err := addStringKV(src, "tokenizer.chat_template", tmpl)
	if err != nil {
		t.Fatalf("rewrite the test model's GGUF header: %v", err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(testenv.Model(t)))
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// GGUF v3 value types (ggml's gguf.h).
const (
	ggufTypeUint32 = 4
	ggufTypeString = 8
	ggufTypeArray  = 9
)

// ggufFixedSize is the byte size of each fixed-size GGUF value type.
var ggufFixedSize = map[uint32]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

// addStringKV returns the GGUF v3 file gguf with one more string key/value. The layout is
//
//	"GGUF" | version u32 | tensor count u64 | KV count u64 | KVs | tensor infos | pad | data
//
// (little-endian; a string is a u64 length and bytes). Tensor offsets are relative to the
// data section, so the infos are copied unchanged; only the data section moves, re-aligned
// to general.alignment (default 32).
func addStringKV(gguf []byte, key, value string) ([]byte, error) {
	r := &ggufReader{b: gguf}
	if string(r.next(4)) != "GGUF" {
		return nil, errors.New("no GGUF magic")
	}
	if v := r.u32(); v != 3 {
		return nil, fmt.Errorf("GGUF version %d, want 3", v)
	}
	nTensors, nKV := r.u64(), r.u64()
	const kvStart = 24
	alignment := uint64(32)
	for i := uint64(0); i < nKV && r.err == nil; i++ {
		k, typ := r.str(), r.u32()
		if k == key {
			return nil, fmt.Errorf("the file already has %s", key)
		}
		if k == "general.alignment" && typ == ggufTypeUint32 {
			alignment = uint64(r.u32())
			continue
		}
		r.skipValue(typ)
	}
	kvEnd := r.off
	for i := uint64(0); i < nTensors && r.err == nil; i++ {
		r.str()                  // name
		r.next(8 * int(r.u32())) // dims
		r.next(4 + 8)            // type, offset
	}
	if r.err != nil {
		return nil, r.err
	}
	infoEnd := r.off
	dataStart := alignUp(uint64(infoEnd), alignment)

	le := binary.LittleEndian
	out := make([]byte, 0, len(gguf)+len(key)+len(value)+64)
	out = append(out, gguf[:16]...) // magic, version, tensor count
	out = le.AppendUint64(out, nKV+1)
	out = append(out, gguf[kvStart:kvEnd]...)
	out = le.AppendUint64(out, uint64(len(key)))
	out = append(out, key...)
	out = le.AppendUint32(out, ggufTypeString)
	out = le.AppendUint64(out, uint64(len(value)))
	out = append(out, value...)
	out = append(out, gguf[kvEnd:infoEnd]...)
	out = append(out, make([]byte, alignUp(uint64(len(out)), alignment)-uint64(len(out)))...)
	return append(out, gguf[dataStart:]...), nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// ggufReader reads little-endian GGUF fields; the first short read sets err and every
// later read returns zeros.
type ggufReader struct {
	b   []byte
	off int
	err error
}

func (r *ggufReader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = fmt.Errorf("GGUF header truncated at byte %d", r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *ggufReader) u32() uint32 {
	if p := r.next(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *ggufReader) u64() uint64 {
	if p := r.next(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func (r *ggufReader) str() string { return string(r.next(int(r.u64()))) }

func (r *ggufReader) skipValue(typ uint32) {
	switch typ {
	case ggufTypeString:
		r.str()
	case ggufTypeArray:
		elem, n := r.u32(), r.u64()
		if size, ok := ggufFixedSize[elem]; ok {
			r.next(size * int(n)) // the tokenizer's arrays are long: skip in one step
			return
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.skipValue(elem)
		}
	default:
		size, ok := ggufFixedSize[typ]
		if !ok && r.err == nil {
			r.err = fmt.Errorf("unknown GGUF value type %d at byte %d", typ, r.off)
		}
		r.next(size)
	}
}
