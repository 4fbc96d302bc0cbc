package models

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strings"
)

// This file reads the header of a GGUF file: the metadata the Models screen shows and the
// tensor table behind the parameter count and quantization (format:
// https://github.com/ggml-org/ggml/blob/master/docs/gguf.md).
// Every count and length in the header is checked against the bytes left in the file
// before it is used, so a hostile or damaged file costs an error, never a huge
// allocation, a panic or a long loop. Large arrays (the tokenizer's vocabulary and
// merges) are skipped, keeping only their length.

// Reasons a header is refused; each headerError carries one (errors.Is matches it).
var (
	errTruncated = errors.New("truncated header")
	errBadMagic  = errors.New("bad magic")
	errVersion   = errors.New("unsupported GGUF version")
	errBigEndian = errors.New("big-endian GGUF")
	errTooLarge  = errors.New("a length or count too large for the file")
	errMalformed = errors.New("malformed header")
	errPastEnd   = errors.New("tensor data past the end of the file")
)

// ErrTruncated matches (errors.Is) a file that ends too early: its header is cut, or a
// tensor's data runs past the end. It is how an incomplete download looks.
var ErrTruncated = errors.New("the file is truncated")

// headerError says where and why a header could not be read. It matches ErrNotGGUF and
// its Reason with errors.Is.
type headerError struct {
	Offset int64 // where the bad item starts
	Reason error
	Detail string // the specifics; Reason's text when empty
	Need   uint64 // for tensor data past the end: the length the file needs
}

func (e *headerError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Reason.Error()
	}
	if e.Offset < 0 {
		return fmt.Sprintf("%v: %s", ErrNotGGUF, msg)
	}
	return fmt.Sprintf("%v: %s at byte %d", ErrNotGGUF, msg, e.Offset)
}

func (e *headerError) Unwrap() []error {
	if e.Reason == errTruncated || e.Reason == errPastEnd {
		return []error{ErrNotGGUF, e.Reason, ErrTruncated}
	}
	return []error{ErrNotGGUF, e.Reason}
}

// Bounds on what the reader allocates. Keys are at most 65535 bytes in the spec; kept
// string values (the architecture) are short; only a few dozen keys are ever kept.
const (
	maxKeyLen        = 1 << 16
	maxKeptString    = 1 << 20
	maxKeptKVs       = 256
	maxTensorName    = 1 << 16
	maxDims          = 4 // GGML_MAX_DIMS
	defaultAlign     = 32
	minKVBytes       = 8 + 4 + 1     // key length, value type, smallest value
	minTensorBytes   = 8 + 4 + 4 + 8 // name length, n_dims, type, offset
	ggufMagic        = "GGUF"
	ggufMagicSwapped = "FUGG" // the magic as a big-endian writer might store it
)

// valueType is a GGUF metadata value type.
type valueType uint32

const (
	typeUint8 valueType = iota
	typeInt8
	typeUint16
	typeInt16
	typeUint32
	typeInt32
	typeFloat32
	typeBool
	typeString
	typeArray
	typeUint64
	typeInt64
	typeFloat64
)

// size is the encoded size of a fixed-size type, 0 for strings, arrays and unknown types.
func (t valueType) size() uint64 {
	switch t {
	case typeUint8, typeInt8, typeBool:
		return 1
	case typeUint16, typeInt16:
		return 2
	case typeUint32, typeInt32, typeFloat32:
		return 4
	case typeUint64, typeInt64, typeFloat64:
		return 8
	}
	return 0
}

func (t valueType) integer() bool {
	return t <= typeInt32 || t == typeUint64 || t == typeInt64
}

func (t valueType) signed() bool {
	return t == typeInt8 || t == typeInt16 || t == typeInt32 || t == typeInt64
}

// ggufValue is a kept metadata value. Integers are kept as magnitude and sign; for an
// integer array (per-layer head counts) u is the largest element.
type ggufValue struct {
	typ   valueType // the element type for arrays
	array bool
	n     uint64 // array or string length
	u     uint64
	neg   bool
	s     string // for kept strings
}

// ggufHeader is what the reader keeps of a GGUF header.
type ggufHeader struct {
	Version     uint32
	kv          map[string]ggufValue
	Tensors     uint64
	Params      uint64                // sum over tensors of the product of their dimensions
	TypeBytes   [ggmlTypeCount]uint64 // tensor data bytes per ggml type
	UnknownType bool                  // some tensor has a type without a known size
	WeightBytes uint64                // tensor data bytes of the known types
	DataOffset  int64                 // where tensor data starts (aligned)
	DataEnd     uint64                // where the furthest tensor's data ends, from DataOffset
	lastTensor  uint64                // the tensor whose data ends there
}

// uint is key's value when it is a non-negative integer (the largest element of an
// integer array).
func (h *ggufHeader) uint(key string) (uint64, bool) {
	v, ok := h.kv[key]
	if !ok || !v.typ.integer() || v.neg || (v.array && v.n == 0) {
		return 0, false
	}
	return v.u, true
}

func (h *ggufHeader) str(key string) string { return h.kv[key].s }

// nonEmptyString says key holds a string of at least one byte (kept or not).
func (h *ggufHeader) nonEmptyString(key string) bool {
	v, ok := h.kv[key]
	return ok && !v.array && v.typ == typeString && v.n > 0
}

// length is a string's or array's length.
func (h *ggufHeader) length(key string) (uint64, bool) {
	v, ok := h.kv[key]
	if !ok || (!v.array && v.typ != typeString) {
		return 0, false
	}
	return v.n, true
}

// archKeys are the {arch}.* hyperparameters the library uses.
var archKeys = []string{".context_length", ".block_count", ".embedding_length",
	".attention.head_count", ".attention.head_count_kv", ".attention.key_length",
	".attention.value_length", ".vocab_size"}

// keepKey says which metadata the library uses: a few general and tokenizer keys and the
// architecture's hyperparameters. The architecture's name may come after its keys, so
// those are matched by suffix.
func keepKey(key string) bool {
	switch key {
	case "general.architecture", "general.file_type", "general.alignment",
		"tokenizer.chat_template", "tokenizer.ggml.tokens":
		return true
	}
	for _, s := range archKeys {
		if strings.HasSuffix(key, s) {
			return true
		}
	}
	return false
}

// decoder reads little-endian GGUF items and knows how many bytes are left.
type decoder struct {
	r    *bufio.Reader
	pos  int64
	size int64
	b    [8]byte
}

func (d *decoder) left() uint64 { return uint64(d.size - d.pos) }

func refuse(at int64, reason error, format string, args ...any) *headerError {
	return &headerError{Offset: at, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

func (d *decoder) readErr(at int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &headerError{Offset: at, Reason: errTruncated}
	}
	return fmt.Errorf("read GGUF header at byte %d: %w", at, err)
}

// fixed reads n ≤ 8 bytes.
func (d *decoder) fixed(n int) ([]byte, error) {
	if uint64(n) > d.left() {
		return nil, &headerError{Offset: d.pos, Reason: errTruncated}
	}
	if _, err := io.ReadFull(d.r, d.b[:n]); err != nil {
		return nil, d.readErr(d.pos, err)
	}
	d.pos += int64(n)
	return d.b[:n], nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.fixed(4)
	if err != nil {
		return 0, err
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24, nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.fixed(8)
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

// count reads a uint64 count of items (named by unit) of at least each bytes, refusing
// one that cannot fit in the rest of the file.
func (d *decoder) count(what, unit string, each uint64) (uint64, error) {
	at := d.pos
	n, err := d.u64()
	if err != nil {
		return 0, err
	}
	if n > d.left()/each {
		return 0, refuse(at, errTooLarge, "%s: %d %s cannot fit in the %d bytes left", what, n, unit, d.left())
	}
	return n, nil
}

// skip discards n bytes (n already checked against the file).
func (d *decoder) skip(n uint64) error {
	for n > 0 {
		step := int(min(n, 1<<20))
		got, err := d.r.Discard(step)
		d.pos += int64(got)
		if err != nil {
			return d.readErr(d.pos, err)
		}
		n -= uint64(got)
	}
	return nil
}

// str reads a GGUF string, keeping it only when keep is set. max (when not 0) bounds its
// length either way.
func (d *decoder) str(what string, keep bool, max uint64) (s string, n uint64, err error) {
	at := d.pos
	if n, err = d.count(what, "bytes", 1); err != nil {
		return "", 0, err
	}
	if max > 0 && n > max {
		return "", 0, refuse(at, errTooLarge, "%s: %d bytes are over the %d-byte limit", what, n, max)
	}
	if !keep {
		return "", n, d.skip(n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", 0, d.readErr(d.pos, err)
	}
	d.pos += int64(n)
	return string(b), n, nil
}

// scalar reads one fixed-size value of type t; integers come back as magnitude and sign.
func (d *decoder) scalar(t valueType) (u uint64, neg bool, err error) {
	b, err := d.fixed(int(t.size()))
	if err != nil {
		return 0, false, err
	}
	for i := len(b) - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	if t.signed() {
		shift := 64 - 8*uint(len(b))
		if s := int64(u<<shift) >> shift; s < 0 {
			return uint64(-(s + 1)) + 1, true, nil
		}
	}
	return u, false, nil
}

// value reads one metadata value of type t for key, filling v when keep is set.
func (d *decoder) value(key string, t valueType, keep bool) (v ggufValue, err error) {
	v.typ = t
	switch {
	case t == typeString:
		// Only the template's presence matters; other kept strings are short names.
		keepText := keep && key != "tokenizer.chat_template"
		limit := uint64(0)
		if keepText {
			limit = maxKeptString
		}
		v.s, v.n, err = d.str(fmt.Sprintf("string value of %q", key), keepText, limit)
		return v, err
	case t == typeArray:
		return d.array(key, keep)
	case t.size() > 0:
		v.u, v.neg, err = d.scalar(t)
		return v, err
	}
	return v, refuse(d.pos-4, errMalformed, "key %q has unknown value type %d", key, t)
}

// array reads an array value: only its length, and for a kept integer array its largest
// element, are kept.
func (d *decoder) array(key string, keep bool) (v ggufValue, err error) {
	at := d.pos
	et, err := d.u32()
	if err != nil {
		return v, err
	}
	v.typ, v.array = valueType(et), true
	what := fmt.Sprintf("array %q", key)
	switch {
	case v.typ == typeString:
		if v.n, err = d.count(what, "strings", 8); err != nil {
			return v, err
		}
		elem := "string in " + what
		for range v.n {
			if _, _, err := d.str(elem, false, 0); err != nil {
				return v, err
			}
		}
	case v.typ.size() > 0:
		size := v.typ.size()
		if v.n, err = d.count(what, "values", size); err != nil {
			return v, err
		}
		if !keep || !v.typ.integer() {
			return v, d.skip(v.n * size)
		}
		v.neg = true // until a non-negative element shows up
		for range v.n {
			u, neg, err := d.scalar(v.typ)
			if err != nil {
				return v, err
			}
			if !neg && (v.neg || u > v.u) {
				v.u, v.neg = u, false
			}
		}
	case v.typ == typeArray:
		// ggml's own reader refuses them too: llama.cpp could not load the file.
		return v, refuse(at, errMalformed, "array %q holds arrays", key)
	default:
		return v, refuse(at, errMalformed, "array %q has unknown element type %d", key, et)
	}
	return v, nil
}

// readGGUF reads the header of a GGUF file of size bytes from r.
func readGGUF(r io.Reader, size int64) (*ggufHeader, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 64<<10), size: max(size, 0)}
	magic, err := d.fixed(4)
	if errors.Is(err, errTruncated) {
		return nil, refuse(0, errBadMagic, "file of %d bytes is shorter than the GGUF magic", d.size)
	} else if err != nil {
		return nil, err
	}
	switch string(magic) {
	case ggufMagic:
	case ggufMagicSwapped:
		return nil, refuse(0, errBigEndian, "big-endian GGUF (only little-endian files are supported)")
	default:
		return nil, refuse(0, errBadMagic, "bad magic %q (want %q)", magic, ggufMagic)
	}
	h := &ggufHeader{kv: make(map[string]ggufValue)}
	if h.Version, err = d.u32(); err != nil {
		return nil, err
	}
	switch {
	case h.Version == 2 || h.Version == 3:
	case bits.ReverseBytes32(h.Version) >= 1 && bits.ReverseBytes32(h.Version) <= 3:
		// A known version read byte-swapped: the file was written big-endian.
		return nil, refuse(4, errBigEndian, "big-endian GGUF version %d (only little-endian files are supported)",
			bits.ReverseBytes32(h.Version))
	default:
		return nil, refuse(4, errVersion, "unsupported GGUF version %d (2 and 3 are supported)", h.Version)
	}
	tensors, err := d.count("tensor count", "tensors", minTensorBytes)
	if err != nil {
		return nil, err
	}
	kvs, err := d.count("metadata count", "keys", minKVBytes)
	if err != nil {
		return nil, err
	}
	for range kvs {
		at := d.pos
		key, _, err := d.str("key", true, maxKeyLen)
		if err != nil {
			return nil, err
		}
		t, err := d.u32()
		if err != nil {
			return nil, err
		}
		keep := keepKey(key) && len(h.kv) < maxKeptKVs
		v, err := d.value(key, valueType(t), keep)
		if err != nil {
			return nil, err
		}
		if keep {
			if _, dup := h.kv[key]; dup {
				return nil, refuse(at, errMalformed, "duplicate key %q", key)
			}
			h.kv[key] = v
		}
	}
	if tensors > d.left()/minTensorBytes {
		return nil, refuse(d.pos, errTooLarge, "tensor count: %d tensors cannot fit in the %d bytes left", tensors, d.left())
	}
	h.Tensors = tensors
	for i := range tensors {
		if err := d.tensor(h, i); err != nil {
			return nil, err
		}
	}
	align := uint64(defaultAlign)
	if a, ok := h.kv["general.alignment"]; ok {
		if a.array || !a.typ.integer() || a.neg || a.u == 0 || a.u&(a.u-1) != 0 || a.u > 1<<30 {
			return nil, refuse(d.pos, errMalformed, "general.alignment is not a power of two")
		}
		align = a.u
	}
	h.DataOffset = int64((uint64(d.pos) + align - 1) / align * align)
	// A header alone says nothing of the data: a halved or cut-off download keeps its
	// whole header, and llama.cpp would refuse it only when loading.
	if end := satAdd(uint64(h.DataOffset), h.DataEnd); end > uint64(d.size) {
		e := refuse(-1, errPastEnd, "truncated: tensor %d's data runs to byte %d, past the end of the file (%d bytes)",
			h.lastTensor, end, d.size)
		e.Need = end
		return nil, e
	}
	return h, nil
}

// tensor reads tensor info i and adds it to h's totals.
func (d *decoder) tensor(h *ggufHeader, i uint64) error {
	at := d.pos
	if _, _, err := d.str("tensor name", false, maxTensorName); err != nil {
		return err
	}
	nDims, err := d.u32()
	if err != nil {
		return err
	}
	if nDims > maxDims {
		return refuse(at, errMalformed, "tensor %d has %d dimensions (at most %d)", i, nDims, maxDims)
	}
	elems := uint64(1)
	for range nDims {
		dim, err := d.u64()
		if err != nil {
			return err
		}
		hi, lo := bits.Mul64(elems, dim)
		if hi != 0 || lo > math.MaxInt64 {
			return refuse(at, errMalformed, "tensor %d has too many elements", i)
		}
		elems = lo
	}
	typ, err := d.u32()
	if err != nil {
		return err
	}
	offset, err := d.u64() // in the data section
	if err != nil {
		return err
	}
	var carry uint64
	if h.Params, carry = bits.Add64(h.Params, elems, 0); carry != 0 {
		return refuse(at, errMalformed, "the tensors hold more than 2^64 elements")
	}
	gt, ok := ggmlTypeOf(typ)
	if !ok {
		h.UnknownType = true
		h.dataUpTo(i, offset) // its size is unknown, its start is not
		return nil
	}
	if elems%gt.block != 0 {
		return refuse(at, errMalformed, "tensor %d: %d elements are not whole %s blocks of %d", i, elems, gt.name, gt.block)
	}
	hi, n := bits.Mul64(elems/gt.block, gt.size)
	if hi != 0 {
		return refuse(at, errMalformed, "tensor %d is too large", i)
	}
	h.TypeBytes[typ] = satAdd(h.TypeBytes[typ], n)
	h.WeightBytes = satAdd(h.WeightBytes, n)
	h.dataUpTo(i, satAdd(offset, n))
	return nil
}

// dataUpTo notes that tensor i's data reaches end (from the start of the data section).
func (h *ggufHeader) dataUpTo(i, end uint64) {
	if end > h.DataEnd {
		h.DataEnd, h.lastTensor = end, i
	}
}

// satAdd saturates instead of wrapping: a hostile header gives a silly byte count, not
// a small one.
func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// ggmlType is a tensor type: name and size of a block of block elements.
type ggmlType struct {
	name  string
	block uint64
	size  uint64
}

// ggmlTypes is ggml's type table (ggml.h enum ggml_type, block sizes from ggml-common.h);
// removed types without a size are left empty.
var ggmlTypes = [...]ggmlType{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144},
	13: {"Q5_K", 256, 176}, 14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292},
	16: {"IQ2_XXS", 256, 66}, 17: {"IQ2_XS", 256, 74}, 18: {"IQ3_XXS", 256, 98},
	19: {"IQ1_S", 256, 50}, 20: {"IQ4_NL", 32, 18}, 21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82}, 23: {"IQ4_XS", 256, 136}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 29: {"IQ1_M", 256, 56},
	30: {"BF16", 1, 2}, 31: {"Q4_0_4_4", 32, 18}, 32: {"Q4_0_4_8", 32, 18},
	33: {"Q4_0_8_8", 32, 18}, 34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66},
	36: {"IQ4_NL_4_4", 32, 18}, 37: {"IQ4_NL_4_8", 32, 18}, 38: {"IQ4_NL_8_8", 32, 18},
	39: {"MXFP4", 32, 17}, 40: {"NVFP4", 64, 36}, 41: {"Q1_0", 128, 18}, 42: {"Q2_0", 64, 18},
}

const ggmlTypeCount = len(ggmlTypes)

func ggmlTypeOf(t uint32) (ggmlType, bool) {
	if t >= uint32(len(ggmlTypes)) || ggmlTypes[t].block == 0 {
		return ggmlType{}, false
	}
	return ggmlTypes[t], true
}

// fileTypes names llama.cpp's llama_ftype values (general.file_type) as llama.cpp's
// quantize tool does, without the MOSTLY_ prefix.
var fileTypes = [...]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_1_SOME_F16", 5: "Q4_2", 6: "Q4_3",
	7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L",
	14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
	20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
	26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
	32: "BF16", 33: "Q4_0_4_4", 34: "Q4_0_4_8", 35: "Q4_0_8_8", 36: "TQ1_0", 37: "TQ2_0",
	38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}

// ftypeGuessed is the LLAMA_FTYPE_GUESSED flag llama.cpp may add to a file type.
const ftypeGuessed = 1024

// quantization names the file's quantization: general.file_type when it is a known
// llama_ftype, else the ggml type holding the most tensor bytes.
func (h *ggufHeader) quantization() string {
	if ft, ok := h.uint("general.file_type"); ok {
		ft &^= ftypeGuessed
		if ft < uint64(len(fileTypes)) && fileTypes[ft] != "" {
			return fileTypes[ft]
		}
	}
	best := -1
	for t, n := range h.TypeBytes {
		if n > 0 && (best < 0 || n > h.TypeBytes[best]) {
			best = t
		}
	}
	if best < 0 {
		return "unknown"
	}
	return ggmlTypes[best].name
}
