package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The official OpenAI Go SDK drives every endpoint, against a real worker and through a
// real Queen's gateway: what editors, agents and chat front-ends send.

const sdkModel = "stories260K"

// sdkTargets starts a worker (with --embeddings and 2 sequences) that registers with a
// real Queen, and returns the two base URLs a client may use: the worker's own and the
// Queen's gateway.
func sdkTargets(t *testing.T) map[string]string {
	t.Helper()
	qport := testenv.FreePort(t)
	queenURL := "http://127.0.0.1:" + strconv.Itoa(qport)
	q := testenv.StartProcess(t, "queen", "--addr", "127.0.0.1:"+strconv.Itoa(qport))
	q.URL = queenURL
	testenv.WaitFor(t, "the Queen up", 15*time.Second, func() bool {
		resp, err := http.Get(queenURL + wire.PathHealth)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	w := testenv.StartWorker(t, "--embeddings", "--parallel", "2", "--queen-url", queenURL)
	testenv.WaitFor(t, "the worker online at the Queen", 15*time.Second, func() bool {
		resp, err := http.Get(queenURL + wire.PathWorkers)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var list wire.WorkerList
		_ = json.NewDecoder(resp.Body).Decode(&list)
		return len(list.Workers) == 1 && list.Workers[0].State == wire.StateOnline
	})
	return map[string]string{"worker": w.URL + "/v1", "queen": queenURL + "/v1"}
}

func sdkClient(base string) openai.Client {
	return openai.NewClient(option.WithBaseURL(base), option.WithAPIKey("unused"), option.WithMaxRetries(0),
		option.WithRequestTimeout(60*time.Second))
}

// fatalAPI fails the test with the API's error body, which says why.
func fatalAPI(t *testing.T, err error) {
	t.Helper()
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		t.Fatalf("%v: %s", err, apiErr.RawJSON())
	}
	t.Fatal(err)
}

// validate checks doc against a JSON Schema with a real validator.
func validate(t *testing.T, schema map[string]any, doc string) {
	t.Helper()
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", schema); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("the answer is not JSON: %v\n%s", err, doc)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("the answer does not follow the schema: %v\n%s", err, doc)
	}
}

var weatherParams = map[string]any{
	"type": "object",
	"properties": map[string]any{
		// Bounded: the test model rambles inside a free string, and with some seeds
		// and CPU builds it does not close one within max_tokens (finish "length").
		"city": map[string]any{"type": "string", "maxLength": 40},
		"unit": map[string]any{"type": "string", "enum": []any{"celsius", "fahrenheit"}},
	},
	"required": []any{"city", "unit"},
}

func weatherTool() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name: "get_weather", Description: openai.String("The weather in a city"), Parameters: weatherParams})
}

func TestOpenAISDK(t *testing.T) {
	targets := sdkTargets(t)
	for _, name := range []string{"worker", "queen"} {
		client := sdkClient(targets[name])
		ctx := context.Background()
		t.Run(name+"/models", func(t *testing.T) {
			page, err := client.Models.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(page.Data, func(m openai.Model) bool { return m.ID == sdkModel }) {
				t.Fatalf("models %+v lack %s", page.Data, sdkModel)
			}
		})

		t.Run(name+"/content parts equal a string", func(t *testing.T) {
			ask := func(m openai.ChatCompletionMessageParamUnion) string {
				res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: sdkModel,
					Messages: []openai.ChatCompletionMessageParamUnion{m}, MaxTokens: openai.Int(16), Temperature: openai.Float(0)})
				if err != nil {
					t.Fatal(err)
				}
				return res.Choices[0].Message.Content
			}
			parts := ask(openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("Tell me a story "), openai.TextContentPart("about a dog.")}))
			plain := ask(openai.UserMessage("Tell me a story about a dog."))
			if parts == "" || parts != plain {
				t.Fatalf("parts answered %q, the string %q", parts, plain)
			}
		})

		t.Run(name+"/json schema", func(t *testing.T) {
			// Strings bounded as weatherParams' city is: how long the test model rambles
			// inside a free string depends on the seed and on the CPU build's arithmetic.
			schema := map[string]any{
				"type": "object",
				"properties": map[string]any{
					"name":  map[string]any{"type": "string", "maxLength": 24},
					"age":   map[string]any{"type": "integer"},
					"pet":   map[string]any{"type": "string", "enum": []any{"cat", "dog", "fish"}},
					"happy": map[string]any{"type": "boolean"},
					"toys": map[string]any{"type": "array", "maxItems": 3,
						"items": map[string]any{"type": "string", "maxLength": 16}},
				},
				"required":             []any{"name", "age", "pet", "happy", "toys"},
				"additionalProperties": false,
			}
			for seed := range 3 {
				res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: sdkModel,
					Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe a child.")},
					MaxTokens: openai.Int(400), Seed: openai.Int(int64(seed)),
					ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
						JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "child", Schema: schema}}}})
				if err != nil {
					t.Fatal(err)
				}
				if res.Choices[0].FinishReason != "stop" {
					t.Fatalf("seed %d: finish %q: %s", seed, res.Choices[0].FinishReason, res.Choices[0].Message.Content)
				}
				validate(t, schema, res.Choices[0].Message.Content)
			}
		})

		t.Run(name+"/json object", func(t *testing.T) {
			res, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: sdkModel,
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Answer in JSON.")},
				MaxTokens: openai.Int(300), Seed: openai.Int(7),
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}})
			if err != nil {
				t.Fatal(err)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(res.Choices[0].Message.Content), &obj); err != nil {
				t.Fatalf("not a JSON object (%v): %s", err, res.Choices[0].Message.Content)
			}
		})

		t.Run(name+"/tool call round trip", func(t *testing.T) {
			msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")}
			params := openai.ChatCompletionNewParams{Model: sdkModel, Messages: msgs, MaxTokens: openai.Int(200), Seed: openai.Int(1),
				Tools:      []openai.ChatCompletionToolUnionParam{weatherTool()},
				ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}}
			res, err := client.Chat.Completions.New(ctx, params)
			if err != nil {
				fatalAPI(t, err)
			}
			choice := res.Choices[0]
			if choice.FinishReason != "tool_calls" || len(choice.Message.ToolCalls) != 1 {
				t.Fatalf("finish %q, calls %+v, content %q", choice.FinishReason, choice.Message.ToolCalls, choice.Message.Content)
			}
			call := choice.Message.ToolCalls[0]
			if call.Function.Name != "get_weather" || call.ID == "" {
				t.Fatalf("call %+v", call)
			}
			validate(t, weatherParams, call.Function.Arguments)

			// The tool's result goes back; the model answers in words.
			params.Messages = append(msgs, choice.Message.ToParam(), openai.ToolMessage(`{"temperature": 21}`, call.ID))
			params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
			params.MaxTokens = openai.Int(16)
			res, err = client.Chat.Completions.New(ctx, params)
			if err != nil {
				fatalAPI(t, err)
			}
			if res.Choices[0].Message.Content == "" || len(res.Choices[0].Message.ToolCalls) != 0 {
				t.Fatalf("answer after the tool result: %+v", res.Choices[0].Message)
			}
		})

		t.Run(name+"/streamed tool call", func(t *testing.T) {
			stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: sdkModel,
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Oslo?")},
				MaxTokens: openai.Int(200), Seed: openai.Int(2),
				Tools: []openai.ChatCompletionToolUnionParam{weatherTool()},
				ToolChoice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{
					Name: "get_weather"})})
			var acc openai.ChatCompletionAccumulator
			finished := 0
			for stream.Next() {
				acc.AddChunk(stream.Current())
				if tc, ok := acc.JustFinishedToolCall(); ok {
					finished++
					if tc.Name != "get_weather" {
						t.Fatalf("finished call %+v", tc)
					}
					validate(t, weatherParams, tc.Arguments)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if finished != 1 || len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" ||
				len(acc.Choices[0].Message.ToolCalls) != 1 {
				t.Fatalf("accumulated %+v (finished %d)", acc.Choices, finished)
			}
			validate(t, weatherParams, acc.Choices[0].Message.ToolCalls[0].Function.Arguments)
		})

		t.Run(name+"/embeddings", func(t *testing.T) {
			res, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: sdkModel,
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a red ball", "a red ball", "the moon is far"}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Data) != 3 || res.Usage.PromptTokens == 0 {
				t.Fatalf("embeddings %d, usage %+v", len(res.Data), res.Usage)
			}
			a, b, c := res.Data[0].Embedding, res.Data[1].Embedding, res.Data[2].Embedding
			if len(a) == 0 || !slices.Equal(a, b) || slices.Equal(a, c) {
				t.Fatalf("same text: equal %v; different text: equal %v (len %d)", slices.Equal(a, b), slices.Equal(a, c), len(a))
			}
		})

		t.Run(name+"/completion prompt array", func(t *testing.T) {
			res, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(sdkModel),
				Prompt:    openai.CompletionNewParamsPromptUnion{OfArrayOfStrings: []string{"Once upon a time", "The dog"}},
				MaxTokens: openai.Int(8), Temperature: openai.Float(0)})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Choices) != 2 || res.Choices[0].Text == "" || res.Choices[1].Text == "" || res.Choices[1].Index != 1 {
				t.Fatalf("choices %+v", res.Choices)
			}
		})
	}
}

// TestRefusedFieldsAreNamed: fields the worker cannot honour are refused by name rather
// than dropped.
func TestRefusedFieldsAreNamed(t *testing.T) {
	w := testenv.StartWorker(t)
	msgs := []map[string]any{{"role": "user", "content": "hi"}}
	cases := map[string]map[string]any{
		"image_url":       {"messages": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "image_url", "image_url": map[string]string{"url": "data:image/png;base64,AAAA"}}}}}},
		"input_audio":     {"messages": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "input_audio"}}}}},
		"pattern":         {"messages": msgs, "response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "x", "schema": map[string]any{"type": "string", "pattern": "^a+$"}}}},
		"tool_choice":     {"messages": msgs, "tool_choice": "required"},
		"response_format": {"messages": msgs, "response_format": map[string]any{"type": "yaml"}},
		"logit_bias":      {"messages": msgs, "logit_bias": map[string]int{"1": 5}},
		"embeddings":      nil, // below
	}
	for name, body := range cases {
		if body == nil {
			continue
		}
		t.Run(name, func(t *testing.T) {
			status, answer := post(t, w.URL+wire.PathChat, body)
			detail := wantError(t, status, answer, http.StatusBadRequest, "")
			if !strings.Contains(detail.Message, name) {
				t.Fatalf("%q does not name %s", detail.Message, name)
			}
		})
	}
	// A worker started without --embeddings says how to get them.
	status, answer := post(t, w.URL+wire.PathEmbeddings, map[string]any{"input": "hi"})
	if detail := wantError(t, status, answer, http.StatusNotImplemented, ""); !strings.Contains(detail.Message, "--embeddings") {
		t.Fatalf("embeddings without --embeddings: %s", fmt.Sprint(detail.Message))
	}
}
