package grammar

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// union converts anyOf / oneOf into alternatives.
func (c *converter) union(k string, v any, path, hint string) (string, error) {
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return "", schemaError(path, "%s must be a non-empty array", k)
	}
	if k == "oneOf" && !c.disjoint(list) {
		return "", &UnsupportedError{Keyword: k, Path: path,
			Reason: "its branches may overlap (a value matching two fails oneOf): use anyOf, distinct types, or objects told apart by a required const property"}
	}
	var exprs []string
	for i, sub := range list {
		e, err := c.visit(sub, fmt.Sprintf("%s/%s/%d", path, k, i), fmt.Sprintf("%s-%d", hint, i))
		if err != nil {
			return "", err
		}
		exprs = append(exprs, e)
	}
	return c.alts(hint, exprs), nil
}

// ref converts a local $ref into the rule of its target, defined once.
func (c *converter) ref(v any, path string) (string, error) {
	ref, ok := v.(string)
	if !ok {
		return "", schemaError(path, "$ref must be a string")
	}
	key := strconv.Itoa(c.docID) + ref
	if name, ok := c.refs[key]; ok {
		if c.leading[name] {
			return "", &UnsupportedError{Keyword: "$ref", Path: path, Reason: "it refers back to " + ref + " before any character is written (left recursion)"}
		}
		return name, nil
	}
	target, err := c.resolve(ref, path)
	if err != nil {
		return "", err
	}
	name := c.unique(ref[strings.LastIndexByte(ref, '/')+1:])
	c.refs[key] = name
	c.pending[name] = true
	c.leading[name] = true
	expr, err := c.visit(target, ref, name)
	delete(c.leading, name)
	if err != nil {
		return "", err
	}
	c.settle(name, expr)
	return name, nil
}

// resolve follows a local JSON Pointer reference in the current document.
func (c *converter) resolve(ref, path string) (any, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, &UnsupportedError{Keyword: "$ref", Path: path, Reason: "only references within the schema (#/$defs/…) are supported"}
	}
	cur := c.doc
	if ref == "#" {
		return cur, nil
	}
	if !strings.HasPrefix(ref, "#/") {
		return nil, &UnsupportedError{Keyword: "$ref", Path: path, Reason: "anchors are not supported, only JSON Pointers"}
	}
	for _, seg := range strings.Split(ref[2:], "/") {
		if s, err := url.PathUnescape(seg); err == nil {
			seg = s
		}
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		switch node := cur.(type) {
		case *object:
			next, ok := node.m[seg]
			if !ok {
				return nil, schemaError(path, "$ref %s points at nothing", ref)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, schemaError(path, "$ref %s points at nothing", ref)
			}
			cur = node[i]
		default:
			return nil, schemaError(path, "$ref %s points at nothing", ref)
		}
	}
	return cur, nil
}

// kinds are the JSON kinds ("integer" counted as "number") a validator may accept
// for s, over-approximated: nil means any.
func (c *converter) kinds(s any, depth int) map[string]bool {
	o, ok := s.(*object)
	if !ok || depth > 16 {
		if s == false {
			return map[string]bool{}
		}
		return nil
	}
	out := map[string]bool{}
	norm := func(k string) string {
		if k == "integer" {
			return "number"
		}
		return k
	}
	if ref, ok := o.m["$ref"].(string); ok {
		target, err := c.resolve(ref, "#")
		if err != nil {
			return nil
		}
		return c.kinds(target, depth+1)
	}
	if v, ok := o.get("const"); ok {
		out[norm(kindOf(v))] = true
		return out
	}
	if list, ok := o.m["enum"].([]any); ok {
		for _, v := range list {
			out[norm(kindOf(v))] = true
		}
		return out
	}
	if types, err := c.declaredTypes(o, "#"); err == nil && types != nil {
		for _, t := range types {
			out[norm(t)] = true
		}
		return out
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if list, ok := o.m[k].([]any); ok {
			for _, sub := range list {
				ks := c.kinds(sub, depth+1)
				if ks == nil {
					return nil
				}
				for kind := range ks {
					out[kind] = true
				}
			}
			return out
		}
	}
	return nil
}

// disjoint tells whether no value can match two of the branches: they are const/enum
// sets with no value in common, their kinds do not meet, or they meet only on objects
// that a required const/enum property tells apart.
func (c *converter) disjoint(branches []any) bool {
	ks := make([]map[string]bool, len(branches))
	for i, b := range branches {
		if ks[i] = c.kinds(b, 0); ks[i] == nil {
			return false
		}
	}
	for i := range branches {
		for j := i + 1; j < len(branches); j++ {
			li, lj := literals(c.deref(branches[i])), literals(c.deref(branches[j]))
			if li != nil && lj != nil && !slices.ContainsFunc(li, func(x string) bool { return slices.Contains(lj, x) }) {
				continue
			}
			for kind := range ks[i] {
				if ks[j][kind] && (kind != "object" || !c.discriminated(branches[i], branches[j])) {
					return false
				}
			}
		}
	}
	return true
}

// discriminated tells whether a property required by both object schemas takes
// const/enum values in one that the other never allows.
func (c *converter) discriminated(a, b any) bool {
	oa, oka := c.deref(a).(*object)
	ob, okb := c.deref(b).(*object)
	if !oka || !okb {
		return false
	}
	for _, name := range requiredOf(oa) {
		if !slices.Contains(requiredOf(ob), name) {
			continue
		}
		va, vb := literals(propOf(oa, name)), literals(propOf(ob, name))
		if va == nil || vb == nil {
			continue
		}
		if !slices.ContainsFunc(va, func(x string) bool { return slices.Contains(vb, x) }) {
			return true
		}
	}
	return false
}

func (c *converter) deref(s any) any {
	for range 16 {
		o, ok := s.(*object)
		if !ok {
			return s
		}
		ref, ok := o.m["$ref"].(string)
		if !ok {
			return s
		}
		target, err := c.resolve(ref, "#")
		if err != nil {
			return s
		}
		s = target
	}
	return s
}

func requiredOf(o *object) []string {
	list, _ := o.m["required"].([]any)
	var names []string
	for _, r := range list {
		if s, ok := r.(string); ok {
			names = append(names, s)
		}
	}
	return names
}

func propOf(o *object, name string) any {
	props, _ := o.m["properties"].(*object)
	if props == nil {
		return nil
	}
	return props.m[name]
}

// literals are the JSON texts a const/enum schema allows, nil for any other schema.
func literals(s any) []string {
	o, ok := s.(*object)
	if !ok {
		return nil
	}
	var values []any
	if v, ok := o.get("const"); ok {
		values = []any{v}
	} else if list, ok := o.m["enum"].([]any); ok {
		values = list
	} else {
		return nil
	}
	var out []string
	for _, v := range values {
		var b bytes.Buffer
		appendJSON(&b, v)
		out = append(out, b.String())
	}
	return out
}
