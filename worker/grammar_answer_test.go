package worker_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// A grammar-constrained answer ends when its grammar is complete, or at max_tokens with
// finish_reason "length"; never with "stop" half-way. The test model likes BOS after a
// sentence, and the grammar reads BOS as the text "<s>", which fits in any JSON string:
// without the BOS ban, one seed in forty here ended its story mid-string as "stop".
func TestGrammarAnswerNeverStopsMidway(t *testing.T) {
	w := testenv.StartWorker(t)
	schema := map[string]any{"type": "object", "properties": map[string]any{"story": map[string]any{"type": "string"}},
		"required": []any{"story"}}
	for seed := 1; seed <= 40; seed++ {
		status, body := post(t, w.URL+wire.PathChat, map[string]any{
			"model": "stories260K", "max_tokens": 300, "seed": seed,
			"messages":        []map[string]any{{"role": "user", "content": "Tell a story in JSON."}},
			"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "story", "schema": schema}},
		})
		if status != http.StatusOK {
			t.Fatalf("seed %d: %d %s", seed, status, body)
		}
		res := decode[wire.ChatCompletion](t, body)
		c := res.Choices[0]
		if c.FinishReason == "stop" && !json.Valid([]byte(c.Message.Content)) {
			t.Errorf("seed %d: finish stop after %d tokens with JSON cut short: %q", seed, res.Usage.CompletionTokens, c.Message.Content)
		}
	}
}
