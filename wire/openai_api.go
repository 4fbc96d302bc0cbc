package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file holds the parts of the OpenAI API that agents and editors send beyond plain
// chat: content parts, tools, structured output, embeddings, prompt arrays.

// Content part types of a message's content array.
const (
	PartText     = "text"
	PartImageURL = "image_url"
)

// ToolCall is a call the assistant makes (OpenAI's tool_calls entries).
type ToolCall struct {
	// Index is set only in streamed deltas.
	Index    *int             `json:"index,omitempty"`
	ID       string           `json:"id,omitempty"`
	Type     string           `json:"type,omitempty"` // "function"
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction names the function called and its arguments, a JSON text.
type ToolCallFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Tool is one entry of a request's tools.
type Tool struct {
	Type     string       `json:"type"` // "function"
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a function the model may call; Parameters is a JSON Schema.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// Tool choices besides a named function.
const (
	ToolChoiceAuto     = "auto"
	ToolChoiceNone     = "none"
	ToolChoiceRequired = "required"
)

// ToolChoice is "auto", "none", "required", or {"type":"function","function":{"name":N}},
// kept as Mode ("function" for the object form) and Function.
type ToolChoice struct {
	Mode     string
	Function string
}

// UnmarshalJSON accepts the string and the object forms.
func (c *ToolChoice) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		c.Mode = s
		return nil
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &obj); err != nil || obj.Function.Name == "" {
		return errors.New(`tool_choice must be "auto", "none", "required" or {"type":"function","function":{"name":...}}`)
	}
	c.Mode, c.Function = "function", obj.Function.Name
	return nil
}

// MarshalJSON writes the form it was read from.
func (c ToolChoice) MarshalJSON() ([]byte, error) {
	if c.Mode == "function" {
		return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": c.Function}})
	}
	return json.Marshal(c.Mode)
}

// Response format types.
const (
	FormatText       = "text"
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"
)

// ResponseFormat is OpenAI's response_format.
type ResponseFormat struct {
	Type       string            `json:"type"`
	JSONSchema *JSONSchemaFormat `json:"json_schema,omitempty"`
}

// JSONSchemaFormat is response_format.json_schema.
type JSONSchemaFormat struct {
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema"`
	Strict *bool           `json:"strict,omitempty"`
}

// chatMessageJSON is ChatMessage on the wire, content left raw.
type chatMessageJSON struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content,omitempty"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// UnmarshalJSON accepts content as a string, null, or an array of content parts: text
// parts are joined into Content (with no separator, as OpenAI concatenates them), image
// parts go to Images. Any other part type is an error naming it.
func (m *ChatMessage) UnmarshalJSON(b []byte) error {
	var raw chatMessageJSON
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = ChatMessage{Role: raw.Role, Name: raw.Name, ToolCalls: raw.ToolCalls, ToolCallID: raw.ToolCallID}
	content := bytes.TrimSpace(raw.Content)
	switch {
	case len(content) == 0 || string(content) == "null":
		return nil
	case content[0] == '"':
		return json.Unmarshal(content, &m.Content)
	case content[0] != '[':
		return errors.New("content must be a string or an array of content parts")
	}
	var parts []struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		ImageURL *struct {
			URL string `json:"url"`
		} `json:"image_url"`
	}
	if err := json.Unmarshal(content, &parts); err != nil {
		return fmt.Errorf("content parts: %w", err)
	}
	var text strings.Builder
	for i, p := range parts {
		switch p.Type {
		case PartText:
			text.WriteString(p.Text)
		case PartImageURL:
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return fmt.Errorf("content[%d]: an image_url part needs image_url.url", i)
			}
			m.Images = append(m.Images, p.ImageURL.URL)
		default:
			return &PartError{Index: i, Type: p.Type}
		}
	}
	m.Content = text.String()
	return nil
}

// MarshalJSON writes content as a string, or null for an assistant message that only
// calls tools (as OpenAI does).
func (m ChatMessage) MarshalJSON() ([]byte, error) {
	out := chatMessageJSON{Role: m.Role, Name: m.Name, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID}
	if m.Content == "" && len(m.ToolCalls) > 0 {
		out.Content = json.RawMessage("null")
	} else {
		c, _ := json.Marshal(m.Content)
		out.Content = c
	}
	return json.Marshal(out)
}

// PartError is a content part of a type the worker does not take.
type PartError struct {
	Index int
	Type  string
}

func (e *PartError) Error() string {
	return fmt.Sprintf("content[%d]: part type %q is not supported: use %q or %q parts", e.Index, e.Type, PartText, PartImageURL)
}

// Prompt is a completion's prompt: a string or an array of strings (one choice each).
type Prompt []string

// UnmarshalJSON accepts a string or an array of strings.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*p = Prompt{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("prompt must be a string or an array of strings (token arrays are not supported)")
	}
	*p = many
	return nil
}

// MarshalJSON writes one prompt as a string.
func (p Prompt) MarshalJSON() ([]byte, error) {
	if len(p) == 1 {
		return json.Marshal(p[0])
	}
	return json.Marshal([]string(p))
}

// EmbeddingInput is the input of /v1/embeddings: a string or an array of strings.
type EmbeddingInput []string

// UnmarshalJSON accepts a string or an array of strings.
func (in *EmbeddingInput) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*in = EmbeddingInput{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("input must be a string or an array of strings (token arrays are not supported)")
	}
	*in = many
	return nil
}

// EmbeddingRequest is the body of POST /v1/embeddings.
type EmbeddingRequest struct {
	Model          string         `json:"model"`
	Input          EmbeddingInput `json:"input"`
	EncodingFormat string         `json:"encoding_format,omitempty"` // "float" (default) or "base64"
	Dimensions     *int           `json:"dimensions,omitempty"`
	User           string         `json:"user,omitempty"`
}

// Embedding is one vector of an EmbeddingResponse: a []float32, or its little-endian
// bytes in base64 when encoding_format is "base64".
type Embedding struct {
	Object    string `json:"object"` // "embedding"
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// EmbeddingResponse answers /v1/embeddings.
type EmbeddingResponse struct {
	Object string         `json:"object"` // "list"
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// EmbeddingUsage counts the tokens read.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// PathEmbeddings is OpenAI's embeddings endpoint.
const PathEmbeddings = "/v1/embeddings"
