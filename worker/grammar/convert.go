package grammar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// FromSchema converts a JSON Schema into a GBNF grammar (start rule "root") whose every
// complete output is JSON that validates against the schema. It generates a subset of
// the valid documents, compact with at most one space between tokens:
//
//   - type: object, array, string, number, integer, boolean, null, or a list of them;
//     without type, the types its keywords imply (any JSON value when none).
//   - properties (emitted in the order given), required (the others optional),
//     additionalProperties: absent or false allows no other property when properties
//     are given (llama.cpp's choice); true or a schema is honoured on objects without
//     properties, and beside properties no extra property is generated.
//   - items (one schema), minItems, maxItems; minLength, maxLength; format date, time,
//     date-time, uuid; minimum, maximum, exclusiveMinimum, exclusiveMaximum on
//     integers, and whole-number bounds on numbers.
//   - enum, const, anyOf, oneOf (when its branches cannot overlap: distinct types,
//     distinct const/enum values, or objects told apart by a required const/enum
//     property), allOf of one schema,
//     $ref to #, #/$defs/… and #/definitions/… (recursion allowed).
//   - Annotations (title, description, default, examples, …) and unknown keywords
//     are ignored, as validators ignore them.
//
// Numbers have at most 15 integer digits, 15 fraction digits and a 2-digit exponent.
// Strings and arrays without maxLength / maxItems are unbounded and a weak model may
// not close them: callers bound generation (max_tokens) and, when it ends before the
// grammar completes, answer finish_reason "length" with the partial text, as OpenAI does.
//
// A keyword it cannot enforce (pattern, multipleOf, uniqueItems, if/then/else, not,
// prefixItems, other formats, minLength on a non-string type, …) is an
// *UnsupportedError; a malformed or unsatisfiable schema matches ErrSchema.
func FromSchema(schema []byte) (string, error) {
	doc, err := decode(schema)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrSchema, err)
	}
	c := newConverter()
	if err := c.convertDoc(doc, 0, "root"); err != nil {
		return "", err
	}
	return c.String(), nil
}

// JSONObject is a grammar for any JSON object (response_format json_object).
func JSONObject() string {
	c := newConverter()
	c.set("root", c.prim("object"))
	return c.String()
}

// maxMagnitude bounds generated integer parts to 15 digits: exact in a float64.
const maxMagnitude = 999_999_999_999_999

// primitives are the shared rules, defined on first use.
var primitives = map[string]struct {
	body string
	deps []string
}{
	"ws":   {`" "?`, nil},
	"char": {`[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2}))`, []string{"hex"}},
	// \u escapes of surrogates are left out: with raw UTF-8 allowed they are never
	// needed, and without them every char is one code point, as minLength counts.
	"hex":       {`[0-9a-fA-F]`, nil},
	"string":    {`"\"" char* "\""`, []string{"char"}},
	"integer":   {`"-"? ("0" | [1-9] [0-9]{0,14})`, nil},
	"number":    {`"-"? ("0" | [1-9] [0-9]{0,14}) frac? ([eE] [-+]? [0-9]{1,2})?`, []string{"frac"}},
	"frac":      {`"." [0-9]{1,15}`, nil},
	"frac-nz":   {`"." [0-9]{0,14} [1-9]`, nil},
	"boolean":   {`"true" | "false"`, nil},
	"null":      {`"null"`, nil},
	"value":     {`object | array | string | number | boolean | null`, []string{"object", "array", "string", "number", "boolean", "null"}},
	"object":    {`"{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? ws "}"`, []string{"ws", "string", "value"}},
	"array":     {`"[" ws ( value ( "," ws value )* )? ws "]"`, []string{"ws", "value"}},
	"uuid":      {`hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12}`, []string{"hex"}},
	"date-time": {`date [tT] time`, []string{"date", "time"}},
	// February stops at 28: the 29th is valid only in leap years.
	"date": {`[0-9]{4} "-" ( "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]) | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | ("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) )`, nil},
	// No leap second: validators accept :60 only at 23:59 UTC.
	"time": {`([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,9})? ([zZ] | [-+] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])`, nil},
}

// formats maps the supported string formats to their rules.
var formats = map[string]string{"date": "date", "time": "time", "date-time": "date-time", "uuid": "uuid"}

// refused are assertions the grammar cannot enforce.
var refused = []string{
	"pattern", "patternProperties", "propertyNames", "minProperties", "maxProperties",
	"dependentRequired", "dependentSchemas", "dependencies", "if", "then", "else", "not",
	"contains", "minContains", "maxContains", "uniqueItems", "prefixItems", "additionalItems",
	"unevaluatedProperties", "unevaluatedItems", "multipleOf", "$dynamicRef", "$recursiveRef",
}

// noop tells the refused keywords whose value asserts nothing.
func noop(keyword string, v any) bool {
	switch keyword {
	case "uniqueItems":
		return v == false
	case "additionalItems", "unevaluatedProperties", "unevaluatedItems":
		return v == true
	}
	return false
}

// typeKeywords are the supported keywords that constrain one type ("number" covers
// "integer").
var typeKeywords = map[string][]string{
	"object": {"properties", "required", "additionalProperties"},
	"array":  {"items", "minItems", "maxItems"},
	"string": {"minLength", "maxLength", "format"},
	"number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
}

// combinators take a whole schema: other assertions beside them are refused.
var combinators = []string{"$ref", "allOf", "anyOf", "oneOf", "enum", "const"}

// converter builds one grammar; rules are shared by identical bodies.
type converter struct {
	doc     any // the schema being converted, for $ref
	docID   int
	rules   map[string]string // name → body
	order   []string          // names, in definition order
	byBody  map[string]string // body → name
	pending map[string]bool   // names claimed by a root or $ref whose body is on its way
	refs    map[string]string // docID + ref → rule name
	// leading are the $ref rules being converted with nothing consumed since they
	// began: referring to one again would be left recursion, which llama.cpp refuses.
	leading map[string]bool
}

func newConverter() *converter {
	return &converter{
		rules:   map[string]string{},
		byBody:  map[string]string{},
		pending: map[string]bool{},
		refs:    map[string]string{},
		leading: map[string]bool{},
	}
}

// String writes the grammar, root first.
func (c *converter) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "root ::= %s\n", c.rules["root"])
	for _, name := range c.order {
		if name != "root" {
			fmt.Fprintf(&b, "%s ::= %s\n", name, c.rules[name])
		}
	}
	return b.String()
}

func (c *converter) set(name, body string) {
	if _, ok := c.rules[name]; !ok {
		c.order = append(c.order, name)
	}
	c.rules[name] = body
}

// define names body after hint (an identical body keeps its first name). A hint that
// a root or $ref claimed gets the body under that very name.
func (c *converter) define(hint, body string) string {
	if c.pending[hint] {
		delete(c.pending, hint)
		c.set(hint, body)
		return hint
	}
	if name, ok := c.byBody[body]; ok {
		return name
	}
	name := c.unique(hint)
	c.set(name, body)
	c.byBody[body] = name
	return name
}

// unique turns hint into a rule name not yet taken.
func (c *converter) unique(hint string) string {
	base := ruleName(hint)
	name := base
	for i := 2; c.taken(name); i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	return name
}

func (c *converter) taken(name string) bool {
	_, rule := c.rules[name]
	_, prim := primitives[name]
	return rule || prim || c.pending[name] || name == "root"
}

// ruleName keeps the characters GBNF allows in names: letters, digits and '-'.
func ruleName(hint string) string {
	b := []byte(hint)
	for i, ch := range b {
		if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "r"
	}
	return string(b)
}

// prim defines a primitive rule and those it uses.
func (c *converter) prim(name string) string {
	if _, ok := c.rules[name]; ok {
		return name
	}
	p := primitives[name]
	c.set(name, p.body)
	for _, d := range p.deps {
		c.prim(d)
	}
	return name
}

// convertDoc converts one schema document into the rule name, which "#" refers to.
func (c *converter) convertDoc(doc any, id int, name string) error {
	c.doc, c.docID = doc, id
	c.refs[strconv.Itoa(id)+"#"] = name
	c.pending[name] = true
	c.leading = map[string]bool{name: true}
	expr, err := c.visit(doc, "#", name)
	c.leading = map[string]bool{}
	if err != nil {
		return err
	}
	c.settle(name, expr)
	return nil
}

// settle gives a claimed name the expression its schema came to, when no rule took it.
func (c *converter) settle(name, expr string) {
	if c.pending[name] {
		delete(c.pending, name)
		c.set(name, expr)
	}
}

// lit is s as a GBNF string literal.
func lit(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// valueLit is a literal matching exactly the JSON text of v.
func valueLit(v any) string {
	var b bytes.Buffer
	appendJSON(&b, v)
	return lit(b.String())
}

// alts joins alternatives into one expression usable inside a sequence: a single
// one as it is, several as a rule.
func (c *converter) alts(hint string, exprs []string) string {
	if len(exprs) == 1 {
		return exprs[0]
	}
	return c.define(hint, strings.Join(exprs, " | "))
}

// visit returns an expression for schema s: a rule name or a sequence, never a bare
// alternation, so it can stand anywhere in a sequence.
func (c *converter) visit(s any, path, hint string) (string, error) {
	switch s := s.(type) {
	case bool:
		if !s {
			return "", schemaError(path, "the schema false allows no value")
		}
		return c.prim("value"), nil
	case *object:
		return c.visitObject(s, path, hint)
	}
	return "", schemaError(path, "a schema must be an object or a boolean")
}

func (c *converter) visitObject(s *object, path, hint string) (string, error) {
	for _, k := range refused {
		if v, ok := s.get(k); ok && !noop(k, v) {
			return "", &UnsupportedError{Keyword: k, Path: path}
		}
	}
	for _, k := range combinators {
		v, ok := s.get(k)
		if !ok {
			continue
		}
		if other := siblingAssertion(s, k); other != "" {
			return "", &UnsupportedError{Keyword: other, Path: path, Reason: "beside " + k}
		}
		switch k {
		case "$ref":
			return c.ref(v, path)
		case "allOf":
			list, ok := v.([]any)
			if !ok || len(list) != 1 {
				return "", &UnsupportedError{Keyword: k, Path: path, Reason: "only allOf with a single schema is supported"}
			}
			return c.visit(list[0], path+"/allOf/0", hint)
		case "anyOf", "oneOf":
			return c.union(k, v, path, hint)
		case "const":
			return c.enum([]any{v}, s, path, hint)
		case "enum":
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return "", schemaError(path, "enum must be a non-empty array")
			}
			return c.enum(list, s, path, hint)
		}
	}
	return c.typed(s, path, hint)
}

// siblingAssertion names a supported assertion of s other than k ("type" may narrow
// enum and const), or "".
func siblingAssertion(s *object, k string) string {
	for _, key := range s.keys {
		if key == k || key == "type" && (k == "enum" || k == "const") {
			continue
		}
		if key == "type" || slices.Contains(combinators, key) {
			return key
		}
		for _, kws := range typeKeywords {
			if slices.Contains(kws, key) {
				return key
			}
		}
	}
	return ""
}

// enum is one literal per value whose type the schema's "type" allows.
func (c *converter) enum(values []any, s *object, path, hint string) (string, error) {
	types, err := c.declaredTypes(s, path)
	if err != nil {
		return "", err
	}
	var exprs []string
	for _, v := range values {
		if len(types) == 0 || slices.ContainsFunc(types, func(t string) bool { return fits(kindOf(v), t) }) {
			exprs = append(exprs, valueLit(v))
		}
	}
	if len(exprs) == 0 {
		return "", schemaError(path, "no enum or const value has the type %s", strings.Join(types, ", "))
	}
	return c.alts(hint, exprs), nil
}

// fits tells whether a value of kind k has type t.
func fits(k, t string) bool {
	return k == t || k == "integer" && t == "number"
}

// declaredTypes reads "type": nil when absent.
func (c *converter) declaredTypes(s *object, path string) ([]string, error) {
	v, ok := s.get("type")
	if !ok {
		return nil, nil
	}
	var list []any
	switch v := v.(type) {
	case string:
		list = []any{v}
	case []any:
		list = v
	}
	var types []string
	for _, t := range list {
		name, _ := t.(string)
		switch name {
		case "object", "array", "string", "number", "integer", "boolean", "null":
			if !slices.Contains(types, name) {
				types = append(types, name)
			}
		default:
			return nil, schemaError(path, "unknown type %v", t)
		}
	}
	if len(types) == 0 {
		return nil, schemaError(path, "type must name at least one type")
	}
	return types, nil
}

// typed converts a schema by its types: declared, else implied by its keywords.
func (c *converter) typed(s *object, path, hint string) (string, error) {
	types, err := c.declaredTypes(s, path)
	if err != nil {
		return "", err
	}
	if types == nil {
		for _, kind := range []string{"object", "array", "string", "number"} {
			if slices.ContainsFunc(typeKeywords[kind], func(k string) bool { _, ok := s.get(k); return ok }) {
				types = append(types, kind)
			}
		}
		if types == nil {
			return c.prim("value"), nil
		}
	}
	for kind, kws := range typeKeywords {
		if slices.ContainsFunc(types, func(t string) bool { return fits(t, kind) }) {
			continue
		}
		for _, k := range kws {
			if _, ok := s.get(k); ok {
				return "", &UnsupportedError{Keyword: k, Path: path,
					Reason: fmt.Sprintf("it applies to %s values but the type is %s", kind, strings.Join(types, ", "))}
			}
		}
	}
	var exprs []string
	for _, t := range types {
		h := hint
		if len(types) > 1 {
			h = hint + "-" + t
		}
		var e string
		switch t {
		case "string":
			e, err = c.str(s, path, h)
		case "number", "integer":
			e, err = c.num(s, path, h, t == "integer")
		case "boolean", "null":
			e = c.prim(t)
		case "array":
			e, err = c.array(s, path, h)
		case "object":
			e, err = c.object(s, path, h)
		}
		if err != nil {
			return "", err
		}
		exprs = append(exprs, e)
	}
	return c.alts(hint, exprs), nil
}

// count reads a non-negative whole number keyword; -1 when absent.
func count(s *object, k, path string) (int, error) {
	v, ok := s.get(k)
	if !ok {
		return -1, nil
	}
	n, err := strconv.ParseFloat(fmt.Sprint(v), 64)
	if _, isNum := v.(json.Number); !isNum || err != nil || n < 0 || n != float64(int(n)) || n > 1<<20 {
		return 0, schemaError(path, "%s must be a whole number from 0 to %d", k, 1<<20)
	}
	return int(n), nil
}

// lengths reads a min/max pair; max is -1 when unbounded.
func lengths(s *object, minKey, maxKey, path string) (lo, hi int, err error) {
	if lo, err = count(s, minKey, path); err != nil {
		return 0, 0, err
	}
	if hi, err = count(s, maxKey, path); err != nil {
		return 0, 0, err
	}
	lo = max(lo, 0)
	if hi >= 0 && hi < lo {
		return 0, 0, schemaError(path, "%s %d is below %s %d", maxKey, hi, minKey, lo)
	}
	return lo, hi, nil
}

// repeat is x repeated lo to hi times (hi -1: no limit); "" for exactly none.
func repeat(x string, lo, hi int) string {
	switch {
	case hi == 0:
		return ""
	case hi < 0 && lo == 0:
		return x + "*"
	case hi < 0 && lo == 1:
		return x + "+"
	case hi < 0:
		return fmt.Sprintf("%s{%d,}", x, lo)
	case lo == 0 && hi == 1:
		return x + "?"
	case lo == 1 && hi == 1:
		return x
	case lo == hi:
		return fmt.Sprintf("%s{%d}", x, lo)
	}
	return fmt.Sprintf("%s{%d,%d}", x, lo, hi)
}

func (c *converter) str(s *object, path, hint string) (string, error) {
	lo, hi, err := lengths(s, "minLength", "maxLength", path)
	if err != nil {
		return "", err
	}
	if f, ok := s.get("format"); ok {
		name, _ := f.(string)
		rule, ok := formats[name]
		if !ok {
			return "", &UnsupportedError{Keyword: "format", Path: path,
				Reason: fmt.Sprintf("format %v; the supported formats are date, time, date-time and uuid", f)}
		}
		for _, k := range []string{"minLength", "maxLength"} {
			if _, ok := s.get(k); ok {
				return "", &UnsupportedError{Keyword: k, Path: path, Reason: "beside format"}
			}
		}
		return `"\"" ` + c.prim(rule) + ` "\""`, nil
	}
	if lo == 0 && hi < 0 {
		return c.prim("string"), nil
	}
	if hi == 0 {
		return `"\"\""`, nil
	}
	return c.define(hint, `"\"" `+repeat(c.prim("char"), lo, hi)+` "\""`), nil
}

// consumed runs f for what comes after an opening character: no left recursion there.
func (c *converter) consumed(f func() error) error {
	saved := c.leading
	c.leading = map[string]bool{}
	defer func() { c.leading = saved }()
	return f()
}

func (c *converter) array(s *object, path, hint string) (string, error) {
	lo, hi, err := lengths(s, "minItems", "maxItems", path)
	if err != nil {
		return "", err
	}
	var item string
	if it, ok := s.get("items"); ok {
		if _, tuple := it.([]any); tuple {
			return "", &UnsupportedError{Keyword: "items", Path: path, Reason: "the array (tuple) form is not supported"}
		}
		if it == false {
			if lo > 0 {
				return "", schemaError(path, "items false allows no item but minItems is %d", lo)
			}
			hi = 0
		} else if err := c.consumed(func() (err error) {
			item, err = c.visit(it, path+"/items", hint+"-item")
			return err
		}); err != nil {
			return "", err
		}
	} else if lo == 0 && hi < 0 {
		return c.prim("array"), nil
	} else {
		item = c.prim("value")
	}
	ws := c.prim("ws")
	if hi == 0 {
		return c.define(hint, `"[" `+ws+` "]"`), nil
	}
	more := `("," ` + ws + " " + item + ")"
	var inner string
	if lo == 0 {
		inner = "(" + join(item, repeat(more, 0, dec(hi))) + ")?"
	} else {
		inner = join(item, repeat(more, lo-1, dec(hi)))
	}
	return c.define(hint, `"[" `+ws+" "+inner+" "+ws+` "]"`), nil
}

// dec is n-1 for a limit, leaving -1 (none) as it is.
func dec(n int) int {
	if n < 0 {
		return n
	}
	return n - 1
}

// join joins the non-empty parts of a sequence.
func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// field is one property of an object rule.
type field struct {
	kv       string // rule for `"name":` ws value
	required bool
}

func (c *converter) object(s *object, path, hint string) (string, error) {
	props := &object{m: map[string]any{}}
	if v, ok := s.get("properties"); ok {
		if props, ok = v.(*object); !ok {
			return "", schemaError(path, "properties must be an object")
		}
	}
	var required []string
	if v, ok := s.get("required"); ok {
		list, _ := v.([]any)
		for _, r := range list {
			name, ok := r.(string)
			if !ok {
				return "", schemaError(path, "required must list property names")
			}
			required = append(required, name)
		}
		if list == nil && v != nil {
			return "", schemaError(path, "required must be an array")
		}
	}
	extra, hasExtra := s.get("additionalProperties")
	if hasExtra {
		if _, ok := extra.(bool); !ok {
			if _, ok := extra.(*object); !ok {
				return "", schemaError(path, "additionalProperties must be a boolean or a schema")
			}
		}
	}
	ws := c.prim("ws")
	if len(props.keys) == 0 && len(required) == 0 {
		switch {
		case extra == false:
			return c.define(hint, `"{" `+ws+` "}"`), nil
		case !hasExtra || extra == true:
			return c.prim("object"), nil
		}
		// A map: any keys, each value to the additionalProperties schema.
		var val string
		err := c.consumed(func() (err error) {
			val, err = c.visit(extra, path+"/additionalProperties", hint+"-value")
			return err
		})
		if err != nil {
			return "", err
		}
		kv := c.define(hint+"-kv", join(c.prim("string"), `":"`, ws, val))
		return c.define(hint, `"{" `+ws+` (`+kv+` ("," `+ws+" "+kv+`)*)? `+ws+` "}"`), nil
	}

	var fields []field
	add := func(name string, schema any, schemaPath string) error {
		var val string
		err := c.consumed(func() (err error) {
			val, err = c.visit(schema, schemaPath, hint+"-"+name)
			return err
		})
		if err != nil {
			return err
		}
		kv := c.define(hint+"-"+name+"-kv", join(lit(jsonString(name)+":"), ws, val))
		fields = append(fields, field{kv: kv, required: slices.Contains(required, name)})
		return nil
	}
	for _, name := range props.keys {
		schema := props.m[name]
		if schema == false { // the property may not appear
			if slices.Contains(required, name) {
				return "", schemaError(path, "property %q is required but its schema is false", name)
			}
			continue
		}
		if err := add(name, schema, pointer(path+"/properties", name)); err != nil {
			return "", err
		}
	}
	for _, name := range required {
		if _, ok := props.m[name]; ok {
			continue
		}
		// Required but not described: its value follows additionalProperties.
		if hasExtra && extra == false {
			return "", schemaError(path, "property %q is required but additionalProperties is false", name)
		}
		schema := any(true)
		if hasExtra {
			schema = extra
		}
		if err := add(name, schema, path+"/additionalProperties"); err != nil {
			return "", err
		}
	}
	return c.define(hint, `"{" `+ws+" "+join(c.fields(fields, hint), ws)+` "}"`), nil
}

// fields is the sequence of properties in their order, optional ones skippable, with
// commas only between those present. after[i] continues once a field is out (each
// next one preceded by a comma); the head starts with the first present field.
func (c *converter) fields(fs []field, hint string) string {
	ws := c.prim("ws")
	after := make([]string, len(fs)+1)
	for i := len(fs) - 1; i >= 0; i-- {
		item := `"," ` + ws + " " + fs[i].kv
		if !fs[i].required {
			item = "(" + item + ")?"
		}
		after[i] = join(item, after[i+1])
	}
	// Fields after the first required one always follow it: after[] covers them.
	start := slices.IndexFunc(fs, func(f field) bool { return f.required })
	if start < 0 {
		start = len(fs) - 1
	}
	head := ""
	for i := start; i >= 0; i-- {
		first := join(fs[i].kv, after[i+1])
		switch {
		case fs[i].required:
			head = first
		case head == "":
			head = "(" + first + ")?"
		default:
			// Either this field is the first present, or it is absent and a later one is.
			rest := head
			if strings.ContainsAny(head, " ()") {
				rest = c.define(hint+"-rest", head)
			}
			head = "(" + first + " | " + rest + ")"
		}
	}
	return head
}
