package grammar_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// TestFromSchemaGrammar pins the exact output for small schemas: the layout the
// other tests and the integrator rely on (root first, shared rules, "root" start).
func TestFromSchemaGrammar(t *testing.T) {
	for _, tc := range []struct{ name, schema, want string }{
		{"enum of mixed values", `{"enum":["x",1,null]}`, `root ::= "\"x\"" | "1" | "null"` + "\n"},
		{"bounded array", `{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":3}`,
			`root ::= "[" ws boolean ("," ws boolean){0,2} ws "]"
boolean ::= "true" | "false"
ws ::= " "?
`},
		{"optional before required", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string","maxLength":3}},"required":["b"]}`,
			`root ::= "{" ws (root-a-kv "," ws root-b-kv | root-b-kv) ws "}"
ws ::= " "?
integer ::= "-"? ("0" | [1-9] [0-9]{0,14})
root-a-kv ::= "\"a\":" ws integer
char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2}))
hex ::= [0-9a-fA-F]
root-b ::= "\"" char{0,3} "\""
root-b-kv ::= "\"b\":" ws root-b
`},
		{"integer range", `{"type":"integer","minimum":-5,"maximum":120}`,
			`root ::= ([0-9] | [1-9] [0-9] | "1" ([0-1] [0-9] | "2" "0")) | "-" [1-5]` + "\n"},
		{"nullable string with escapes in a key", `{"type":"object","properties":{"say \"hi\"\n":{"type":["string","null"]}},"required":["say \"hi\"\n"]}`,
			`root ::= "{" ws root-say--hi---kv ws "}"
ws ::= " "?
string ::= "\"" char* "\""
char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2}))
hex ::= [0-9a-fA-F]
null ::= "null"
root-say--hi-- ::= string | null
root-say--hi---kv ::= "\"say \\\"hi\\\"\\n\":" ws root-say--hi--
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := grammar.FromSchema([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestFromSchemaIgnoresAnnotations: annotations and unknown keywords change nothing,
// as validators ignore them too.
func TestFromSchemaIgnoresAnnotations(t *testing.T) {
	plain, err := grammar.FromSchema([]byte(`{"type":"string"}`))
	if err != nil {
		t.Fatal(err)
	}
	annotated, err := grammar.FromSchema([]byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","$comment":"c",
		"type":"string","title":"T","description":"D","default":"d","examples":["e"],"deprecated":false,"readOnly":true,
		"x-vendor":{"pattern":"ignored"},"uniqueItems":false,"$defs":{"unused":{"pattern":"x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if annotated != plain {
		t.Errorf("annotations changed the grammar:\n%s\nvs\n%s", annotated, plain)
	}
}

// TestFromSchemaUnsupported: every keyword it cannot enforce is named, with where.
func TestFromSchemaUnsupported(t *testing.T) {
	for _, tc := range []struct{ name, schema, keyword, path string }{
		{"pattern", `{"type":"string","pattern":"^a"}`, "pattern", "#"},
		{"unknown format, escaped path", `{"type":"object","properties":{"a/b~":{"type":"string","format":"email"}}}`, "format", "#/properties/a~1b~0"},
		{"minLength on integer", `{"type":"integer","minLength":1}`, "minLength", "#"},
		{"items on object", `{"type":"object","items":{}}`, "items", "#"},
		{"if then else", `{"if":{"type":"string"},"then":{"minLength":1}}`, "if", "#"},
		{"not", `{"not":{"type":"null"}}`, "not", "#"},
		{"multipleOf", `{"type":"number","multipleOf":0.5}`, "multipleOf", "#"},
		{"uniqueItems", `{"type":"array","uniqueItems":true}`, "uniqueItems", "#"},
		{"prefixItems", `{"type":"array","prefixItems":[{"type":"string"}]}`, "prefixItems", "#"},
		{"tuple items", `{"type":"array","items":[{"type":"string"}]}`, "items", "#"},
		{"allOf of two", `{"allOf":[{"type":"object"},{"required":["a"]}]}`, "allOf", "#"},
		{"overlapping oneOf", `{"oneOf":[{"type":"integer"},{"type":"number"}]}`, "oneOf", "#"},
		{"oneOf of overlapping consts", `{"oneOf":[{"enum":["a","b"]},{"const":"b"}]}`, "oneOf", "#"},
		{"oneOf of objects without discriminator", `{"oneOf":[{"type":"object","properties":{"a":{"type":"string"}}},{"type":"object"}]}`, "oneOf", "#"},
		{"remote ref", `{"$ref":"https://example.com/s.json"}`, "$ref", "#"},
		{"ref beside type", `{"$defs":{"a":{}},"$ref":"#/$defs/a","type":"object"}`, "type", "#"},
		{"anyOf beside properties", `{"properties":{"a":{}},"anyOf":[{"required":["a"]}]}`, "properties", "#"},
		{"fractional bound on number", `{"type":"number","maximum":0.5}`, "maximum", "#"},
		{"draft-4 exclusiveMinimum", `{"type":"integer","minimum":0,"exclusiveMinimum":true}`, "exclusiveMinimum", "#"},
		{"patternProperties", `{"type":"object","patternProperties":{"^x":{}}}`, "patternProperties", "#"},
		{"propertyNames", `{"type":"object","propertyNames":{"maxLength":3}}`, "propertyNames", "#"},
		{"minProperties", `{"type":"object","minProperties":1}`, "minProperties", "#"},
		{"deep in anyOf", `{"type":"array","items":{"anyOf":[{"type":"string"},{"type":"string","pattern":"x"}]}}`, "pattern", "#/items/anyOf/1"},
		{"format beside maxLength", `{"type":"string","format":"date","maxLength":10}`, "maxLength", "#"},
		{"in a definition", `{"$defs":{"d":{"type":"string","pattern":"x"}},"type":"object","properties":{"p":{"$ref":"#/$defs/d"}}}`, "pattern", "#/$defs/d"},
		{"enum beside maxLength", `{"enum":["a"],"maxLength":1}`, "maxLength", "#"},
		{"left recursion", `{"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"}`, "$ref", "#/$defs/a/anyOf/0"},
		{"root left recursion", `{"anyOf":[{"type":"null"},{"$ref":"#"}]}`, "$ref", "#/anyOf/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grammar.FromSchema([]byte(tc.schema))
			var ue *grammar.UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v, want an *UnsupportedError", err)
			}
			if ue.Keyword != tc.keyword || ue.Path != tc.path {
				t.Errorf("keyword %q at %q, want %q at %q (%v)", ue.Keyword, ue.Path, tc.keyword, tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.keyword) {
				t.Errorf("message %q does not name %s", err, tc.keyword)
			}
		})
	}
}

// TestFromSchemaInvalid: malformed or unsatisfiable schemas match ErrSchema.
func TestFromSchemaInvalid(t *testing.T) {
	for name, schema := range map[string]string{
		"not JSON":              `{"type":`,
		"trailing data":         `{} {}`,
		"false":                 `false`,
		"a number":              `3`,
		"unknown type":          `{"type":"str"}`,
		"empty type list":       `{"type":[]}`,
		"negative minLength":    `{"type":"string","minLength":-1}`,
		"fractional maxLength":  `{"type":"string","maxLength":1.5}`,
		"minItems over maxItem": `{"type":"array","minItems":3,"maxItems":2}`,
		"required not a list":   `{"type":"object","required":"a"}`,
		"required but false":    `{"type":"object","properties":{"a":false},"required":["a"]}`,
		"required, closed":      `{"type":"object","properties":{"a":{}},"required":["b"],"additionalProperties":false}`,
		"empty enum":            `{"enum":[]}`,
		"enum outside type":     `{"type":"string","enum":[1,2]}`,
		"dangling ref":          `{"$ref":"#/$defs/missing"}`,
		"empty integer range":   `{"type":"integer","minimum":5,"maximum":4}`,
		"empty number range":    `{"type":"number","exclusiveMinimum":1,"exclusiveMaximum":1}`,
		"items false, minItems": `{"type":"array","items":false,"minItems":1}`,
		"properties not object": `{"type":"object","properties":[]}`,
	} {
		if _, err := grammar.FromSchema([]byte(schema)); !errors.Is(err, grammar.ErrSchema) {
			t.Errorf("%s: error %v, want ErrSchema", name, err)
		}
	}
}

// TestToolCallGrammar: the call format, choices and errors.
func TestToolCallGrammar(t *testing.T) {
	tools := []grammar.Tool{
		{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)},
		{Name: "now"},
	}
	got, err := grammar.ToolCall(tools, "required")
	if err != nil {
		t.Fatal(err)
	}
	want := `root ::= "{" ws "\"name\":" ws ("\"get_weather\"," ws "\"arguments\":" ws get-weather-args | "\"now\"," ws "\"arguments\":" ws now-args) ws "}"
ws ::= " "?
string ::= "\"" char* "\""
char ::= [^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] hex{3} | [dD] [0-7] hex{2}))
hex ::= [0-9a-fA-F]
get-weather-args-city-kv ::= "\"city\":" ws string
get-weather-args ::= "{" ws get-weather-args-city-kv ws "}"
now-args ::= "{" ws "}"
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	named, err := grammar.ToolCall(tools, "now")
	if err != nil || strings.Contains(named, "get_weather") {
		t.Errorf("named tool: %v\n%s", err, named)
	}
	for _, choice := range []string{"auto", "none", "", "missing"} {
		if _, err := grammar.ToolCall(tools, choice); !errors.Is(err, grammar.ErrToolChoice) {
			t.Errorf("choice %q: %v, want ErrToolChoice", choice, err)
		}
	}
	if _, err := grammar.ToolCall(nil, "required"); !errors.Is(err, grammar.ErrToolChoice) {
		t.Errorf("no tools: %v", err)
	}
	dup := []grammar.Tool{{Name: "a"}, {Name: "a"}}
	if _, err := grammar.ToolCall(dup, "required"); !errors.Is(err, grammar.ErrSchema) {
		t.Errorf("duplicate names: %v", err)
	}
	bad := []grammar.Tool{{Name: "f", Parameters: json.RawMessage(`{"type":"object","properties":{"s":{"type":"string","pattern":"x"}}}`)}}
	var ue *grammar.UnsupportedError
	if _, err := grammar.ToolCall(bad, "f"); !errors.As(err, &ue) || ue.Path != "#/properties/s" || !strings.Contains(err.Error(), `tool "f"`) {
		t.Errorf("unsupported parameters: %v", err)
	}
}

// TestToolCallRefsStayPerTool: each tool's "#" and $defs are its own.
func TestToolCallRefsStayPerTool(t *testing.T) {
	tools := []grammar.Tool{
		{Name: "a", Parameters: json.RawMessage(`{"$defs":{"x":{"type":"integer"}},"type":"object","properties":{"v":{"$ref":"#/$defs/x"}},"required":["v"]}`)},
		{Name: "b", Parameters: json.RawMessage(`{"$defs":{"x":{"type":"boolean"}},"type":"object","properties":{"v":{"$ref":"#/$defs/x"}},"required":["v"]}`)},
	}
	got, err := grammar.ToolCall(tools, "required")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"x ::= integer", "x-2 ::= boolean", `a-args-v-kv ::= "\"v\":" ws x`, `b-args-v-kv ::= "\"v\":" ws x-2`} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
}

// TestParseToolCall reads back calls in the ToolCall format.
func TestParseToolCall(t *testing.T) {
	name, args, err := grammar.ParseToolCall(`{"name": "get_weather", "arguments": { "city": "Paris", "n": [1, 2] }}`)
	if err != nil || name != "get_weather" || string(args) != `{"city":"Paris","n":[1,2]}` {
		t.Errorf("got %q %s %v", name, args, err)
	}
	for _, text := range []string{
		``, `{"name": "f", "arguments": {"a":`, `{"arguments": {}}`, `{"name": "", "arguments": {}}`,
		`{"name": "f", "arguments": "{}"}`, `{"name": "f"}`, `{"name": "f", "arguments": {}} trailing`, `[]`,
	} {
		if _, _, err := grammar.ParseToolCall(text); !errors.Is(err, grammar.ErrNotToolCall) {
			t.Errorf("%q: %v, want ErrNotToolCall", text, err)
		}
	}
}
