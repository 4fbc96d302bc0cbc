package chattmpl

import (
	"errors"
	"strings"
)

// normalize rewrites a template so that ardanlabs/jinja renders its whitespace as
// transformers does. Transformers compiles chat templates with trim_blocks and
// lstrip_blocks on and drops one trailing newline; the engine does none of these, and
// its own trim markers reach past neighbouring tags and read quotes inside comments
// (an apostrophe in a {# comment #} leaves it unclosed). So every whitespace rule is
// applied here, on the text between tags, and the engine gets tags without - or +
// markers and no comments.
func normalize(src string) (string, error) {
	src = strings.TrimSuffix(src, "\n") // keep_trailing_newline=False
	var out strings.Builder
	lineStart := true    // the next text begins a line (lstrip_blocks)
	trimNext := false    // the previous tag ended with -: strip all leading whitespace
	dropNewline := false // the previous tag was a block or comment: drop one newline (trim_blocks)
	for len(src) > 0 {
		open := tagStart(src)
		text := src
		if open >= 0 {
			text = src[:open]
		}
		switch {
		case trimNext:
			text = strings.TrimLeft(text, " \t\r\n")
		case dropNewline:
			if rest, ok := strings.CutPrefix(text, "\n"); ok {
				text = rest
			} else if rest, ok := strings.CutPrefix(text, "\r\n"); ok {
				text = rest
			}
		}
		if open < 0 {
			out.WriteString(text)
			break
		}
		tag, err := readTag(src[open:])
		if err != nil {
			return "", err
		}
		block := tag.kind == '%' || tag.kind == '#'
		switch {
		case tag.trimLeft:
			text = strings.TrimRight(text, " \t\r\n")
		case block && !tag.plusLeft:
			// lstrip_blocks: spaces and tabs alone before the tag on its line go.
			if nl := strings.LastIndexByte(text, '\n') + 1; nl > 0 || lineStart {
				if strings.Trim(text[nl:], " \t") == "" {
					text = text[:nl]
				}
			}
		}
		out.WriteString(text)
		switch tag.kind {
		case '{':
			out.WriteString("{{" + tag.body + "}}")
		case '%':
			out.WriteString("{%" + tag.body + "%}")
		}
		src = src[open+tag.length:]
		trimNext = tag.trimRight
		dropNewline = block && !tag.plusRight
		// After a block's newline was dropped, the next text begins a line.
		lineStart = dropNewline && (strings.HasPrefix(src, "\n") || strings.HasPrefix(src, "\r\n"))
	}
	return out.String(), nil
}

// tagStart is the index of the next {{, {% or {#, or -1.
func tagStart(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '{' && (s[i+1] == '{' || s[i+1] == '%' || s[i+1] == '#') {
			return i
		}
	}
	return -1
}

// tag is one {{ }}, {% %} or {# #} with its whitespace markers taken off.
type tag struct {
	kind                byte // '{', '%' or '#'
	body                string
	length              int // in the source, markers and delimiters included
	trimLeft, trimRight bool
	plusLeft, plusRight bool
}

// readTag reads the tag at the start of s; quoted strings may hold closers, except
// in comments, whose text is opaque.
func readTag(s string) (tag, error) {
	t := tag{kind: s[1]}
	closer := map[byte]string{'{': "}}", '%': "%}", '#': "#}"}[t.kind]
	i := 2
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		t.trimLeft, t.plusLeft = s[i] == '-', s[i] == '+'
		i++
	}
	start := i
	for i < len(s) {
		if t.kind != '#' && (s[i] == '\'' || s[i] == '"') {
			q := s[i]
			for i++; i < len(s) && s[i] != q; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			i++
			continue
		}
		if strings.HasPrefix(s[i:], closer) {
			end := i
			if end > start && (s[end-1] == '-' || s[end-1] == '+') {
				t.trimRight, t.plusRight = s[end-1] == '-', s[end-1] == '+'
				end--
			}
			t.body = s[start:end]
			t.length = i + len(closer)
			return t, nil
		}
		i++
	}
	return tag{}, errors.New("a tag is not closed")
}
