package synthmodel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// GGUF value types (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
const (
	ggufUint8 uint32 = iota
	ggufInt8
	ggufUint16
	ggufInt16
	ggufUint32
	ggufInt32
	ggufFloat32
	ggufBool
	ggufString
	ggufArray
	ggufUint64
	ggufInt64
	ggufFloat64
)

// ggml tensor types used here.
const (
	typeF32  uint32 = 0
	typeQ8_0 uint32 = 8
)

const (
	ggufMagic   = "GGUF"
	ggufVersion = 3
	alignment   = 32
	// maxString bounds one string of a file being read, so a corrupt length fails
	// instead of allocating gigabytes.
	maxString = 1 << 26
)

// ErrNoTokenizer is matched (errors.Is) when the tokenizer source is not a GGUF file
// with a tokenizer.
var ErrNoTokenizer = errors.New("no GGUF tokenizer")

// tokenizer is the tokenizer.* metadata of a GGUF file, kept as the encoded key/value
// pairs so it is copied byte for byte.
type tokenizer struct {
	raw   []byte // the encoded pairs, back to back
	count int    // pairs in raw
	vocab int    // entries of tokenizer.ggml.tokens
}

// readTokenizer reads the tokenizer.* metadata of the GGUF file at path.
func readTokenizer(path string) (*tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer source: %w", err)
	}
	defer f.Close()
	tok, err := parseTokenizer(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("tokenizer source %s: %w", path, err)
	}
	return tok, nil
}

func parseTokenizer(br *bufio.Reader) (*tokenizer, error) {
	r := &recorder{r: br}
	var hdr struct {
		Magic   [4]byte
		Version uint32
		Tensors uint64
		KVs     uint64
	}
	if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrNoTokenizer, err)
	}
	if string(hdr.Magic[:]) != ggufMagic {
		return nil, fmt.Errorf("%w: it does not start with the GGUF magic bytes", ErrNoTokenizer)
	}
	// Version 1 used 32-bit lengths; 2 and 3 share the layout read here.
	if hdr.Version < 2 || hdr.Version > 3 {
		return nil, fmt.Errorf("%w: GGUF version %d (want 2 or 3)", ErrNoTokenizer, hdr.Version)
	}
	tok := &tokenizer{}
	for i := uint64(0); i < hdr.KVs; i++ {
		r.buf = r.buf[:0]
		r.on = true
		key, err := r.string()
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrNoTokenizer, i, err)
		}
		keep := strings.HasPrefix(key, "tokenizer.")
		r.on = keep
		typ, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoTokenizer, key, err)
		}
		n, err := r.skipValue(typ)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNoTokenizer, key, err)
		}
		if !keep {
			continue
		}
		tok.raw = append(tok.raw, r.buf...)
		tok.count++
		if key == "tokenizer.ggml.tokens" {
			tok.vocab = n
		}
	}
	if tok.vocab == 0 {
		return nil, fmt.Errorf("%w: it has no tokenizer.ggml.tokens", ErrNoTokenizer)
	}
	return tok, nil
}

// recorder reads GGUF values and, while on, keeps a copy of the bytes it read.
type recorder struct {
	r   *bufio.Reader
	on  bool
	buf []byte
	tmp [8]byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.on {
		r.buf = append(r.buf, p[:n]...)
	}
	return n, err
}

func (r *recorder) u32() (uint32, error) {
	if _, err := io.ReadFull(r, r.tmp[:4]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(r.tmp[:4]), nil
}

func (r *recorder) u64() (uint64, error) {
	if _, err := io.ReadFull(r, r.tmp[:8]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.tmp[:8]), nil
}

func (r *recorder) string() (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > maxString {
		return "", fmt.Errorf("string of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// skip reads n bytes, keeping them when on.
func (r *recorder) skip(n uint64) error {
	_, err := io.CopyN(io.Discard, r, int64(n))
	return err
}

// skipValue reads one value of type typ; for an array it returns the element count.
func (r *recorder) skipValue(typ uint32) (int, error) {
	if size := scalarSize(typ); size > 0 {
		return 0, r.skip(uint64(size))
	}
	switch typ {
	case ggufString:
		n, err := r.u64()
		if err != nil {
			return 0, err
		}
		if n > maxString {
			return 0, fmt.Errorf("string of %d bytes", n)
		}
		return 0, r.skip(n)
	case ggufArray:
		elem, err := r.u32()
		if err != nil {
			return 0, err
		}
		n, err := r.u64()
		if err != nil {
			return 0, err
		}
		if n > maxString {
			return 0, fmt.Errorf("array of %d elements", n)
		}
		if size := scalarSize(elem); size > 0 {
			return int(n), r.skip(n * uint64(size))
		}
		for i := uint64(0); i < n; i++ {
			if _, err := r.skipValue(elem); err != nil {
				return 0, err
			}
		}
		return int(n), nil
	}
	return 0, fmt.Errorf("unknown value type %d", typ)
}

// scalarSize is the encoded size of a fixed-size value type, 0 for the others.
func scalarSize(typ uint32) int {
	switch typ {
	case ggufUint8, ggufInt8, ggufBool:
		return 1
	case ggufUint16, ggufInt16:
		return 2
	case ggufUint32, ggufInt32, ggufFloat32:
		return 4
	case ggufUint64, ggufInt64, ggufFloat64:
		return 8
	}
	return 0
}

// encoder appends GGUF metadata to a buffer.
type encoder struct {
	bytes.Buffer
	kvs int
}

func (e *encoder) u32(v uint32) { e.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (e *encoder) u64(v uint64) { e.Write(binary.LittleEndian.AppendUint64(nil, v)) }

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.WriteString(s)
}

func (e *encoder) kvString(key, v string) {
	e.str(key)
	e.u32(ggufString)
	e.str(v)
	e.kvs++
}

func (e *encoder) kvUint32(key string, v uint32) {
	e.str(key)
	e.u32(ggufUint32)
	e.u32(v)
	e.kvs++
}

func (e *encoder) kvFloat32(key string, v float32) {
	e.str(key)
	e.u32(ggufFloat32)
	e.u32(math.Float32bits(v))
	e.kvs++
}

// tensorInfo appends a tensor's info; dims are in GGUF order (ne0 first).
func (e *encoder) tensorInfo(name string, typ uint32, offset uint64, dims ...int) {
	e.str(name)
	e.u32(uint32(len(dims)))
	for _, d := range dims {
		e.u64(uint64(d))
	}
	e.u32(typ)
	e.u64(offset)
}

// pad appends zeros up to the next multiple of alignment.
func (e *encoder) pad() {
	e.Write(make([]byte, padding(int64(e.Len()))))
}

func padding(n int64) int64 { return (alignment - n%alignment) % alignment }

// float16 converts a positive float32 to IEEE half precision, truncating; values below
// the half range become subnormals or zero.
func float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		return sign | uint16((mant|0x800000)>>(14-exp))
	}
	return sign | uint16(exp)<<10 | uint16(mant>>13)
}
