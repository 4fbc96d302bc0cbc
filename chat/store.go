package chat

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Message is one turn of a conversation. An assistant message carries its metrics, or the
// error that cut it short (shown inline with the way out).
type Message struct {
	Role    string    `json:"role"` // system, user, assistant
	Content string    `json:"content"`
	At      time.Time `json:"at"`
	Metrics *Metrics  `json:"metrics,omitempty"`
	Error   string    `json:"error,omitempty"`
	// ErrorKind lets a reopened chat still offer the way out (respawn, new chat...).
	ErrorKind ErrorKind `json:"error_kind,omitempty"`
	Stopped   bool      `json:"stopped,omitempty"`
	// AnsweredBy is the worker the Queen routed the answer to ("" for a worker's own
	// answer), kept so a reopened chat still says who answered.
	AnsweredBy string `json:"answered_by,omitempty"`
}

// Conversation is one chat, stored as one JSON file.
type Conversation struct {
	ID           string    `json:"id"`
	Title        string    `json:"title"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
	Target       Target    `json:"target"`
	SystemPrompt string    `json:"system_prompt"`
	Params       Params    `json:"params"`
	Messages     []Message `json:"messages"`
}

// NewConversation starts an empty chat with default settings.
func NewConversation() *Conversation {
	now := time.Now()
	return &Conversation{ID: newID(now), Created: now, Updated: now, Params: DefaultParams()}
}

// WireMessages is what is sent to the model: the system prompt, then every turn that
// has content (an answer that failed before its first token is left out).
func (c *Conversation) WireMessages() []wire.ChatMessage {
	out := make([]wire.ChatMessage, 0, len(c.Messages)+1)
	if s := strings.TrimSpace(c.SystemPrompt); s != "" {
		out = append(out, wire.ChatMessage{Role: "system", Content: s})
	}
	for _, m := range c.Messages {
		if m.Content == "" {
			continue
		}
		out = append(out, wire.ChatMessage{Role: m.Role, Content: m.Content})
	}
	return out
}

// AutoTitle names the chat after its first user message when it has no title yet.
func (c *Conversation) AutoTitle() {
	if c.Title != "" {
		return
	}
	for _, m := range c.Messages {
		if m.Role == "user" {
			t := strings.Join(strings.Fields(m.Content), " ")
			if r := []rune(t); len(r) > 48 {
				t = string(r[:48]) + "…"
			}
			c.Title = t
			return
		}
	}
}

// Summary is a stored chat as the list shows it.
type Summary struct {
	ID      string
	Title   string
	Updated time.Time
	Model   string
}

// ErrNotFound means no stored chat has that id.
var ErrNotFound = errors.New("chat not found")

// Store keeps conversations in a folder, one <id>.json file each, written atomically.
type Store struct {
	dir string
	mu  sync.Mutex // serialises writes so two saves of one chat never interleave renames
}

// OpenStore uses dir (created if missing), typically filepath.Join(dirs.Data(), "chats").
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chat store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the folder holding the chats.
func (s *Store) Dir() string { return s.dir }

var idPattern = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$`)

func newID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

func (s *Store) path(id string) (string, error) {
	if !idPattern.MatchString(id) {
		return "", fmt.Errorf("chat id %q: %w", id, ErrNotFound)
	}
	return filepath.Join(s.dir, id+".json"), nil
}

// Save writes c (temp file + rename, so a crash leaves the old or the new chat, never
// half of one) and stamps Updated.
func (s *Store) Save(c *Conversation) error {
	p, err := s.path(c.ID)
	if err != nil {
		return err
	}
	c.Updated = time.Now()
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode chat: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeAtomic(p, b)
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// Load reads one chat.
func (s *Store) Load(id string) (*Conversation, error) {
	p, err := s.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("chat %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("chat %s: %w", id, err)
	}
	var c Conversation
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("chat file %s is damaged (%w); it is left untouched", p, err)
	}
	c.ID = id
	return &c, nil
}

// List returns every readable chat, most recently updated first. Damaged files are
// skipped here and reported in the second result, never deleted.
func (s *Store) List() ([]Summary, []error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{fmt.Errorf("list chats: %w", err)}
	}
	var out []Summary
	var bad []error
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idPattern.MatchString(id) {
			continue
		}
		c, err := s.Load(id)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		title := c.Title
		if title == "" {
			title = "New chat"
		}
		out = append(out, Summary{ID: id, Title: title, Updated: c.Updated, Model: c.Target.Model})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Updated.After(out[j].Updated) })
	return out, bad
}

// Delete removes one chat.
func (s *Store) Delete(id string) error {
	p, err := s.path(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("chat %s: %w", id, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("delete chat %s: %w", id, err)
	}
	return nil
}
