// Package grammar turns JSON Schemas and tool lists into llama.cpp GBNF grammars, so
// sampling can only produce JSON that parses and validates.
package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// ErrSchema is matched (errors.Is) when a schema is not valid JSON Schema, or allows
// no value at all.
var ErrSchema = errors.New("invalid JSON Schema")

// UnsupportedError names a JSON Schema keyword the converter cannot enforce; the
// worker answers 400 with it rather than sample output that might not validate.
type UnsupportedError struct {
	Keyword string // e.g. "pattern"
	Path    string // JSON Pointer of the schema holding it, "#" for the root, e.g. "#/properties/name"
	Reason  string // optional detail, e.g. "only whole-number bounds are supported"
}

func (e *UnsupportedError) Error() string {
	msg := fmt.Sprintf("JSON Schema keyword %q at %s is not supported for constrained output", e.Keyword, e.Path)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// schemaError wraps ErrSchema with where and why.
func schemaError(path, format string, args ...any) error {
	return fmt.Errorf("%w at %s: %s", ErrSchema, path, fmt.Sprintf(format, args...))
}

// object is a decoded JSON object that keeps its keys' order: the order of
// "properties" is the order of the generated fields.
type object struct {
	keys []string
	m    map[string]any
}

func (o *object) get(k string) (any, bool) {
	v, ok := o.m[k]
	return v, ok
}

// decode parses JSON into nil, bool, json.Number, string, []any and *object.
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if d == '[' {
		arr := []any{}
		for dec.More() {
			v, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token()
		return arr, err
	}
	o := &object{m: map[string]any{}}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		v, err := decodeValue(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := o.m[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.m[k] = v
	}
	_, err = dec.Token()
	return o, err
}

// appendJSON writes v compactly, keys in their order, without HTML escaping.
func appendJSON(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		fmt.Fprint(b, v)
	case json.Number:
		b.WriteString(v.String())
	case string:
		b.WriteString(jsonString(v))
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			appendJSON(b, e)
		}
		b.WriteByte(']')
	case *object:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(jsonString(k))
			b.WriteByte(':')
			appendJSON(b, v.m[k])
		}
		b.WriteByte('}')
	}
}

// jsonString is s as a JSON string, with <, > and & left as they are.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}

// kindOf is the JSON Schema type of a decoded value ("integer" for whole numbers).
func kindOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		if r, ok := new(big.Rat).SetString(v.String()); ok && r.IsInt() {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	default:
		return "object"
	}
}

// pointer appends a JSON Pointer segment to path.
func pointer(path, seg string) string {
	return path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(seg)
}
