package grammar_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/worker/grammar"
)

// testModel is the real test model, loaded once for every test here.
var testModel struct {
	once   sync.Once
	model  llama.Model
	vocab  llama.Vocab
	pieces map[string]llama.Token // a token's text → the token, for acceptance checks
	err    error
}

func loadModel(t *testing.T) (llama.Model, llama.Vocab) {
	t.Helper()
	path := testenv.Model(t)
	testenv.Runtime(t)
	testModel.once.Do(func() {
		if _, err := llamaruntime.Load(""); err != nil {
			testModel.err = err
			return
		}
		mp := llama.ModelDefaultParams()
		mp.SetCPUOnly()
		m, err := llama.ModelLoadFromFile(path, mp)
		if err != nil || m == 0 {
			testModel.err = fmt.Errorf("load %s: %v", path, err)
			return
		}
		testModel.model, testModel.vocab = m, llama.ModelGetVocab(m)
		testModel.pieces = map[string]llama.Token{}
		buf := make([]byte, 64)
		for tok := range llama.Token(llama.VocabNTokens(testModel.vocab)) {
			n := llama.TokenToPiece(testModel.vocab, tok, buf, 0, false)
			if n <= 0 || llama.VocabIsControl(testModel.vocab, tok) {
				continue
			}
			if _, dup := testModel.pieces[string(buf[:n])]; !dup {
				testModel.pieces[string(buf[:n])] = tok
			}
		}
	})
	if testModel.err != nil {
		t.Fatal(testModel.err)
	}
	return testModel.model, testModel.vocab
}

// tokensOf splits text into vocabulary tokens by longest piece. llama_tokenize would
// prefix a space (SentencePiece), which a grammar starting with "{" rightly refuses.
func tokensOf(t *testing.T, text string) []llama.Token {
	var toks []llama.Token
	for len(text) > 0 {
		n := min(len(text), 16)
		for ; n > 0; n-- {
			if tok, ok := testModel.pieces[text[:n]]; ok {
				toks = append(toks, tok)
				break
			}
		}
		if n == 0 {
			t.Fatalf("no token for %q", text)
		}
		text = text[n:]
	}
	return toks
}

// accepts runs text through llama.cpp's own grammar engine: every token must be
// allowed where it comes, and end-of-generation must be allowed at the end.
func accepts(t *testing.T, gbnf, text string) bool {
	t.Helper()
	_, vocab := loadModel(t)
	smpl, err := grammar.NewSampler(vocab, gbnf)
	if err != nil {
		t.Fatalf("%v\n%s", err, gbnf)
	}
	defer llama.SamplerFree(smpl)
	data := make([]llama.TokenData, llama.VocabNTokens(vocab))
	allowed := func(tok llama.Token) bool {
		for i := range data {
			data[i] = llama.TokenData{Id: llama.Token(i)}
		}
		arr := llama.TokenDataArray{Data: &data[0], Size: uint64(len(data)), Selected: -1}
		llama.SamplerApply(smpl, &arr)
		return !math.IsInf(float64(data[tok].Logit), -1)
	}
	for _, tok := range tokensOf(t, text) {
		if !allowed(tok) {
			return false
		}
		llama.SamplerAccept(smpl, tok)
	}
	return allowed(llama.VocabEOS(vocab))
}

// compile compiles a JSON Schema with format assertions on.
func compile(t *testing.T, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// validate parses text as JSON and validates it.
func validate(sch *jsonschema.Schema, text string) error {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(inst)
}

// acceptanceCases pair schemas with documents llama.cpp must accept (all valid) and
// refuse under the converted grammar.
var acceptanceCases = []struct {
	name   string
	schema string
	accept []string
	refuse []string
}{
	{"string escapes", `{"type":"string"}`,
		[]string{`""`, `"a b"`, `"q\"uote"`, `"back\\slash"`, `"line\nbreak"`, `"\u00e9t\u00C9"`, `"é ü 漢"`, `"\/\b\f\r\t"`},
		[]string{`"raw` + "\n" + `newline"`, `"\x"`, `"\u12"`, `"\ud83d\ude00"`, `"open`, `'single'`, ` "lead"`}},
	{"string lengths", `{"type":"string","minLength":2,"maxLength":4}`,
		[]string{`"ab"`, `"abcd"`, `"é\n"`},
		[]string{`""`, `"a"`, `"abcde"`}},
	{"number syntax", `{"type":"number"}`,
		[]string{`0`, `-0`, `12`, `-3.25`, `1e5`, `2.5E-3`, `6.02e+23`, `999999999999999`},
		[]string{`01`, `+1`, `.5`, `1.`, `1e`, `--1`, `1e100`, `NaN`, `1000000000000000`}},
	{"integer bounds", `{"type":"integer","minimum":-12,"maximum":120}`,
		[]string{`-12`, `-1`, `0`, `7`, `99`, `100`, `119`, `120`},
		[]string{`-13`, `121`, `200`, `1.5`, `-0`, `007`}},
	{"integer exclusive bounds", `{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10}`,
		[]string{`1`, `9`}, []string{`0`, `10`}},
	{"number bounds", `{"type":"number","minimum":0,"maximum":1}`,
		[]string{`0`, `0.5`, `1`, `0.999`},
		[]string{`1.5`, `-0.1`, `2`, `1e0`}},
	{"number exclusive bounds", `{"type":"number","exclusiveMinimum":-1,"exclusiveMaximum":1}`,
		[]string{`0`, `0.5`, `-0.5`, `-0.01`},
		[]string{`1`, `-1`, `-1.5`, `-0`, `-0.0`}},
	{"enum and const", `{"type":"object","properties":{"c":{"enum":["red","green",3,null,{"k":[1]}]},"k":{"const":"fixed"}},"required":["c","k"]}`,
		[]string{`{"c":"red","k":"fixed"}`, `{"c":3, "k":"fixed"}`, `{ "c":null,"k":"fixed" }`, `{"c":{"k":[1]},"k":"fixed"}`},
		[]string{`{"c":"blue","k":"fixed"}`, `{"c":"red","k":"other"}`, `{"k":"fixed","c":"red"}`}},
	{"optional properties keep order", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},"c":{"type":"integer"}},"required":["b"]}`,
		[]string{`{"b":1}`, `{"a":1,"b":2}`, `{"b":2,"c":3}`, `{"a":1, "b":2, "c":3}`},
		[]string{`{}`, `{"a":1}`, `{"b":1,"a":2}`, `{"b":1,}`, `{,"b":1}`, `{"b":1,"d":2}`}},
	{"all optional", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}}}`,
		[]string{`{}`, `{"a":1}`, `{"b":2}`, `{"a":1,"b":2}`},
		[]string{`{"b":2,"a":1}`, `{"c":1}`}},
	{"arrays", `{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":3}`,
		[]string{`[true]`, `[true, false]`, `[ true,false,true ]`},
		[]string{`[]`, `[true,true,true,true]`, `[1]`, `[true,]`}},
	{"nested objects and null", `{"type":"object","properties":{"p":{"type":"object","properties":{"q":{"type":["string","null"]}},"required":["q"]}},"required":["p"]}`,
		[]string{`{"p":{"q":null}}`, `{"p":{"q":"x"}}`},
		[]string{`{"p":{}}`, `{"p":null}`}},
	{"map", `{"type":"object","additionalProperties":{"type":"integer"}}`,
		[]string{`{}`, `{"x":1,"y":2}`}, []string{`{"x":"1"}`}},
	{"defs, recursion, anyOf", `{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}`,
		[]string{`{"v":1,"next":null}`, `{"v":1,"next":{"v":2,"next":null}}`},
		[]string{`{"v":1}`, `{"v":1,"next":{"v":2}}`}},
	{"tree through #", `{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#"}}},"required":["v"]}`,
		[]string{`{"v":1}`, `{"v":1,"kids":[{"v":2},{"v":3,"kids":[]}]}`},
		[]string{`{"v":1,"kids":[{}]}`}},
	{"oneOf told apart by const", `{"oneOf":[{"type":"object","properties":{"kind":{"const":"a"},"x":{"type":"integer"}},"required":["kind","x"]},{"type":"object","properties":{"kind":{"const":"b"}},"required":["kind"]},{"type":"string","format":"date"}]}`,
		[]string{`{"kind":"a","x":1}`, `{"kind":"b"}`, `"2024-02-28"`, `"2023-12-31"`},
		[]string{`{"kind":"c"}`, `"2023-02-29"`, `"2023-04-31"`, `"2023-13-01"`}},
	{"oneOf of described consts", `{"oneOf":[{"const":"low","description":"cheap"},{"const":"high"},{"enum":[1,2]}]}`,
		[]string{`"low"`, `"high"`, `2`}, []string{`"mid"`, `3`}},
	{"formats", `{"type":"array","items":{"anyOf":[{"type":"string","format":"uuid"},{"type":"string","format":"date-time"},{"type":"string","format":"time"}]}}`,
		[]string{`["123e4567-e89b-12d3-a456-426614174000","2024-01-31T23:59:59Z","12:00:00.5+02:00"]`},
		[]string{`["123e4567"]`, `["2024-01-31 23:59:59Z"]`, `["24:00:00Z"]`, `["23:59:60Z"]`}},
}

// TestGrammarAcceptance checks the converted grammars in llama.cpp's grammar engine:
// the documents meant to pass pass (and validate), the others do not.
func TestGrammarAcceptance(t *testing.T) {
	loadModel(t)
	for _, tc := range acceptanceCases {
		t.Run(tc.name, func(t *testing.T) {
			gbnf, err := grammar.FromSchema([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			sch := compile(t, tc.schema)
			for _, doc := range tc.accept {
				if err := validate(sch, doc); err != nil {
					t.Fatalf("bad test: %s does not validate: %v", doc, err)
				}
				if !accepts(t, gbnf, doc) {
					t.Errorf("grammar refuses %s\n%s", doc, gbnf)
				}
			}
			for _, doc := range tc.refuse {
				if accepts(t, gbnf, doc) {
					t.Errorf("grammar accepts %s\n%s", doc, gbnf)
				}
			}
		})
	}
}

// TestJSONObjectGrammar: any object, and only objects.
func TestJSONObjectGrammar(t *testing.T) {
	loadModel(t)
	gbnf := grammar.JSONObject()
	for _, doc := range []string{`{}`, `{"a":[1,{"b":null}],"c":"d\n","e":-1.5e3,"f":true}`} {
		if !accepts(t, gbnf, doc) {
			t.Errorf("refuses %s", doc)
		}
	}
	for _, doc := range []string{`[]`, `"x"`, `1`, `{"a"}`, `{"a":1,}`} {
		if accepts(t, gbnf, doc) {
			t.Errorf("accepts %s", doc)
		}
	}
}

// TestNewSamplerRefusesInvalidGrammar guards the check on SamplerInitGrammar's 0: a
// chain would skip the missing sampler and sample unconstrained.
func TestNewSamplerRefusesInvalidGrammar(t *testing.T) {
	_, vocab := loadModel(t)
	for name, gbnf := range map[string]string{
		"syntax":         `root ::= "{" (`,
		"undefined rule": `root ::= missing`,
		"no root":        `start ::= "x"`,
		"left recursion": "root ::= root \"x\" | \"y\"",
		"empty":          "",
		"NUL":            "root ::= \"a\x00\"",
	} {
		s, err := grammar.NewSampler(vocab, gbnf)
		if !errors.Is(err, grammar.ErrInvalidGrammar) || s != 0 {
			t.Errorf("%s: sampler %v, error %v; want ErrInvalidGrammar", name, s, err)
		}
	}
	if _, err := grammar.NewSampler(0, `root ::= "x"`); !errors.Is(err, grammar.ErrInvalidGrammar) {
		t.Errorf("no vocabulary: %v", err)
	}
	s, err := grammar.NewSampler(vocab, grammar.JSONObject())
	if err != nil || s == 0 {
		t.Fatalf("JSONObject: %v", err)
	}
	llama.SamplerFree(s)
}

// generate samples up to budget tokens after prompt under gbnf, as the worker's chain
// does (grammar, top-k 40, top-p 0.95, temperature, dist), or greedily when seed is 0.
// done reports whether the model ended (end of generation) within the budget.
func generate(t *testing.T, gbnf, prompt string, seed uint32, budget int) (text string, done bool) {
	t.Helper()
	model, vocab := loadModel(t)
	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NThreads, cp.NThreadsBatch = 1024, 512, 1, 1
	lctx, err := llama.InitFromModel(model, cp)
	if err != nil || lctx == 0 {
		t.Fatalf("context: %v", err)
	}
	defer llama.Free(lctx)

	g, err := grammar.NewSampler(vocab, gbnf)
	if err != nil {
		t.Fatalf("%v\n%s", err, gbnf)
	}
	chain := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	defer llama.SamplerFree(chain) // frees the samplers it holds
	llama.SamplerChainAdd(chain, g)
	if seed == 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitGreedy())
	} else {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopK(40))
		llama.SamplerChainAdd(chain, llama.SamplerInitTopP(0.95, 1))
		llama.SamplerChainAdd(chain, llama.SamplerInitTemp(0.8))
		llama.SamplerChainAdd(chain, llama.SamplerInitDist(seed))
	}

	toks := llama.Tokenize(vocab, prompt, true, false)
	if _, err := llama.Decode(lctx, llama.BatchGetOne(toks)); err != nil {
		t.Fatalf("decode prompt: %v", err)
	}
	var out bytes.Buffer
	buf := make([]byte, 64)
	for range budget {
		tok := llama.SamplerSample(chain, lctx, -1) // also accepts tok into the grammar
		if llama.VocabIsEOG(vocab, tok) {
			return out.String(), true
		}
		if n := llama.TokenToPiece(vocab, tok, buf, 0, false); n > 0 {
			out.Write(buf[:n])
		}
		if _, err := llama.Decode(lctx, llama.BatchGetOne([]llama.Token{tok})); err != nil {
			t.Fatalf("decode: %v", err)
		}
	}
	return out.String(), false
}

// budget is the token limit of a generation: the schemas below bound their strings
// and arrays, so every grammar can complete well within it.
const budget = 600

// generationCases are the structured-output schemas the test model must satisfy.
var generationCases = []struct{ name, schema string }{
	{"person", `{"type":"object","properties":{
		"name":{"type":"string","minLength":1,"maxLength":24},
		"age":{"type":"integer","minimum":0,"maximum":150},
		"height":{"type":"number"},
		"color":{"enum":["red","green","blue"]},
		"pets":{"type":"array","items":{"type":"string","maxLength":12},"maxItems":3},
		"address":{"type":"object","properties":{"city":{"type":"string","maxLength":20},"zip":{"type":["integer","null"]}},"required":["city","zip"]},
		"alive":{"type":"boolean"},
		"nothing":{"type":"null"},
		"nickname":{"type":"string","maxLength":10}},
		"required":["name","age","height","color","pets","address","alive","nothing"]}`},
	{"refs and oneOf", `{"$defs":{"point":{"type":"object","properties":{"x":{"type":"number","minimum":-10,"maximum":10},"y":{"type":"integer"}},"required":["x","y"]}},
		"type":"object","properties":{
		"shape":{"oneOf":[
			{"type":"object","properties":{"kind":{"const":"circle"},"center":{"$ref":"#/$defs/point"},"r":{"type":"number","exclusiveMinimum":0,"maximum":100}},"required":["kind","center","r"]},
			{"type":"object","properties":{"kind":{"const":"poly"},"points":{"type":"array","items":{"$ref":"#/$defs/point"},"minItems":3,"maxItems":4}},"required":["kind","points"]}]},
		"when":{"type":"string","format":"date-time"},
		"id":{"type":"string","format":"uuid"}},
		"required":["shape","when","id"]}`},
	{"array of enums", `{"type":"array","items":{"type":"object","properties":{"op":{"enum":["add","del"]},"n":{"type":"integer","minimum":1,"maximum":9}},"required":["op","n"]},"minItems":1,"maxItems":5}`},
}

// TestGeneratedOutputValidates is the proof: the tiny test model, sampling at
// temperature 0.8 under the converted grammar, writes JSON that validates.
func TestGeneratedOutputValidates(t *testing.T) {
	loadModel(t)
	seeds := []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 42, 1234, 99991, 7777, 31337, 271828} // 0 = greedy
	valid, total := 0, 0
	for _, tc := range generationCases {
		gbnf, err := grammar.FromSchema([]byte(tc.schema))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sch := compile(t, tc.schema)
		for _, seed := range seeds {
			total++
			text, done := generate(t, gbnf, "Once upon a time", seed, budget)
			if !done {
				t.Errorf("%s, seed %d: no end within %d tokens: %s", tc.name, seed, budget, text)
				continue
			}
			if err := validate(sch, text); err != nil {
				t.Errorf("%s, seed %d: %v\n%s", tc.name, seed, err, text)
				continue
			}
			valid++
		}
	}
	t.Logf("%d/%d generated documents valid", valid, total)
}

// TestUnboundedStringsTerminate measures how often the model closes unbounded
// strings and arrays within the budget: the reason callers must cap max_tokens.
func TestUnboundedStringsTerminate(t *testing.T) {
	loadModel(t)
	schema := `{"type":"object","properties":{"title":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}}},"required":["title","tags"]}`
	gbnf, err := grammar.FromSchema([]byte(schema))
	if err != nil {
		t.Fatal(err)
	}
	sch := compile(t, schema)
	done, valid := 0, 0
	const runs = 10
	for seed := range uint32(runs) {
		text, ok := generate(t, gbnf, "Once upon a time", seed+1, budget)
		if !ok {
			continue
		}
		done++
		if err := validate(sch, text); err != nil {
			t.Errorf("seed %d: completed but invalid: %v\n%s", seed+1, err, text)
			continue
		}
		valid++
	}
	t.Logf("unbounded strings: %d/%d completed within %d tokens, %d of them valid", done, runs, budget, valid)
}

// TestForcedToolCallGenerated: a forced call parses and its arguments validate
// against the chosen tool's parameters, for "required" and a named tool.
func TestForcedToolCallGenerated(t *testing.T) {
	loadModel(t)
	tools := []grammar.Tool{
		{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","maxLength":16},"unit":{"enum":["c","f"]}},"required":["city","unit"]}`)},
		{Name: "add", Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}`)},
		{Name: "now"},
	}
	schemas := map[string]*jsonschema.Schema{
		"get_weather": compile(t, string(tools[0].Parameters)),
		"add":         compile(t, string(tools[1].Parameters)),
		"now":         compile(t, `{"type":"object","additionalProperties":false}`),
	}
	valid, total := 0, 0
	for _, choice := range []string{"required", "add", "now"} {
		gbnf, err := grammar.ToolCall(tools, choice)
		if err != nil {
			t.Fatal(err)
		}
		for seed := range uint32(8) {
			total++
			text, done := generate(t, gbnf, "Once upon a time", seed, budget)
			if !done {
				t.Errorf("%s, seed %d: no end within %d tokens: %s", choice, seed, budget, text)
				continue
			}
			name, args, err := grammar.ParseToolCall(text)
			if err != nil {
				t.Errorf("%s, seed %d: %v\n%s", choice, seed, err, text)
				continue
			}
			if choice != "required" && name != choice {
				t.Errorf("%s, seed %d: called %q", choice, seed, name)
				continue
			}
			if err := validate(schemas[name], string(args)); err != nil {
				t.Errorf("%s, seed %d: arguments of %s: %v\n%s", choice, seed, name, err, text)
				continue
			}
			valid++
		}
	}
	t.Logf("%d/%d forced tool calls valid", valid, total)
}
