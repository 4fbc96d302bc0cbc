package ui

import (
	"fmt"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

// dump writes segments as one line per segment: kind, style, text (quoted), so a table
// test states exactly what the chat shows.
func dump(segs []widget.RichTextSegment) []string {
	var out []string
	for _, s := range segs {
		switch s := s.(type) {
		case *widget.TextSegment:
			out = append(out, fmt.Sprintf("%s %q", styleName(s.Style), s.Text))
		case *widget.HyperlinkSegment:
			out = append(out, fmt.Sprintf("link %q %s", s.Text, s.URL))
		case *widget.ListSegment:
			head := "list"
			if s.Ordered {
				head = fmt.Sprintf("list from %d", s.StartNumber())
			}
			out = append(out, head)
			for _, item := range s.Items {
				for _, line := range dump(item.(*widget.ParagraphSegment).Texts) {
					out = append(out, "  "+line)
				}
			}
		case *widget.SeparatorSegment:
			out = append(out, "separator")
		default:
			out = append(out, fmt.Sprintf("%T", s))
		}
	}
	return out
}

func styleName(st widget.RichTextStyle) string {
	switch st {
	case widget.RichTextStyleInline:
		return "text"
	case widget.RichTextStyleParagraph:
		return "para"
	case widget.RichTextStyleEmphasis:
		return "italic"
	case widget.RichTextStyleStrong:
		return "bold"
	case widget.RichTextStyleCodeInline:
		return "code"
	case widget.RichTextStyleCodeBlock:
		return "codeblock"
	case widget.RichTextStyleBlockquote:
		return "quote"
	case widget.RichTextStyleHeading:
		return "h1"
	case widget.RichTextStyleSubHeading:
		return "h2"
	}
	return fmt.Sprintf("%+v", st)
}

// TestMarkdownSegmentsKeepTheText: what a model writes is what the chat shows (issue 13):
// a single newline is a line break, and no space appears that was not written ("fairie!"
// read "fairie !" when goldmark split the text before the "!").
func TestMarkdownSegmentsKeepTheText(t *testing.T) {
	cases := []struct {
		name, md string
		want     []string
	}{
		{"newline is a line break", "line one\nline two\nline three",
			[]string{`text "line one\nline two\nline three"`, `para ""`}},
		{"no space before !", "Once upon a time there was a fairie!",
			[]string{`text "Once upon a time there was a fairie!"`, `para ""`}},
		{"no space before ! at a line end", "a fairie!\nShe flew.",
			[]string{`text "a fairie!\nShe flew."`, `para ""`}},
		{"brackets and bangs", "Wow! [not a link] and !x",
			[]string{`text "Wow! [not a link] and !x"`, `para ""`}},
		{"trailing space before a newline", "the park. \nAs he walked",
			[]string{`text "the park.\nAs he walked"`, `para ""`}},
		{"hard break", "a  \nb\\\nc", []string{`text "a\nb\nc"`, `para ""`}},
		{"paragraphs", "one\n\ntwo", []string{`text "one"`, `para ""`, `text "two"`, `para ""`}},
		{"emphasis keeps its neighbours' spaces", "Some *emphasis*, then **bold!** text",
			[]string{`text "Some "`, `italic "emphasis"`, `text ", then "`, `bold "bold!"`, `text " text"`, `para ""`}},
		{"emphasis across a line break", "*one\ntwo*", []string{`italic "one\ntwo"`, `para ""`}},
		{"escapes", `1\*2 and \!`, []string{`text "1*2 and !"`, `para ""`}},
		{"entities", "fish &amp; chips &#33;", []string{`text "fish & chips !"`, `para ""`}},
		{"code keeps backslashes", "`a\\*b`", []string{`code "a\\*b"`, `para ""`}},
		{"code span", "call `f(x)!` now", []string{`text "call "`, `code "f(x)!"`, `text " now"`, `para ""`}},
		{"raw HTML stays", "use <br> or <b>x</b>", []string{`text "use <br> or <b>x</b>"`, `para ""`}},
		{"less-than stays", "if x < y then", []string{`text "if x < y then"`, `para ""`}},
		{"autolink", "see <https://example.com>!",
			[]string{`text "see "`, `link "https://example.com" https://example.com`, `text "!"`, `para ""`}},
		{"link", "[the docs](https://d.example/x) now",
			[]string{`link "the docs" https://d.example/x`, `text " now"`, `para ""`}},
		{"image is a link to it", "![a bee](https://i.example/bee.png)",
			[]string{`link "a bee" https://i.example/bee.png`, `para ""`}},
		{"heading", "# Hello, world!\nbody", []string{`h1 "Hello, world!"`, `text "body"`, `para ""`}},
		{"list", "- one!\n- two\n  more", []string{"list", `  text "one!"`, `  text "two\nmore"`}},
		{"ordered list keeps its start", "3. c\n4. d", []string{"list from 3", `  text "c"`, `  text "d"`}},
		{"code block", "```go\nfmt.Println(\"hi!\")\n\nx := 1\n```",
			[]string{`codeblock "fmt.Println(\"hi!\")\n\nx := 1"`}},
		{"quote", "> quoted *line*\n> and more", []string{`quote "quoted line\nand more"`, `para ""`}},
		{"rule", "a\n\n---\n\nb", []string{`text "a"`, `para ""`, "separator", `text "b"`, `para ""`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := dump(markdownSegments(tc.md))
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("markdownSegments(%q):\n got %s\nwant %s", tc.md, strings.Join(got, "\n     "), strings.Join(tc.want, "\n     "))
			}
		})
	}
}

func TestMergeRuns(t *testing.T) {
	text := func(s string) *widget.TextSegment {
		return &widget.TextSegment{Text: s, Style: widget.RichTextStyleInline}
	}
	bold := &widget.TextSegment{Text: "b", Style: widget.RichTextStyleStrong}
	end := &widget.TextSegment{Style: widget.RichTextStyleParagraph}
	cases := []struct {
		name string
		in   []widget.RichTextSegment
		want []string
	}{
		{"one run, nothing added", []widget.RichTextSegment{text("fairie"), text("!"), text("\nnext")}, []string{`text "fairie!\nnext"`}},
		{"styles stay apart", []widget.RichTextSegment{text("a "), bold, text(" c")}, []string{`text "a "`, `bold "b"`, `text " c"`}},
		{"a paragraph end stays", []widget.RichTextSegment{text("a"), end, text("b"), end}, []string{`text "a"`, `para ""`, `text "b"`, `para ""`}},
		{"empty", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := dump(mergeRuns(tc.in)); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLongLinesCutIntoPieces(t *testing.T) {
	words := strings.Repeat("Lily saw a big red ball in the park. ", 300)
	cases := []struct{ name, text string }{
		{"short", "Once upon a time"},
		{"long paragraph", words},
		{"long word", strings.Repeat("x", 2000)},
		{"lines", "first line\n" + words + "\nlast line"},
		{"multibyte", strings.Repeat("éà ü ", 500)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pieces := splitLongLines(tc.text, maxLineRunes)
			if strings.Join(pieces, "") != tc.text {
				t.Fatal("pieces do not add up to the text")
			}
			for _, p := range pieces {
				for _, line := range strings.Split(p, "\n") {
					if n := len([]rune(line)); n > 2*maxLineRunes {
						t.Fatalf("a piece keeps a line of %d runes", n)
					}
				}
			}
			whole := widget.NewRichText(&widget.TextSegment{Text: tc.text, Style: widget.RichTextStyleParagraph})
			cut := widget.NewRichText(plainSegments(tc.text)...)
			if cut.String() != whole.String() {
				t.Fatal("cut segments read differently from the whole")
			}
			last := cut.Segments[len(cut.Segments)-1].(*widget.TextSegment)
			if last.Style.Inline || (len(cut.Segments) > 1 && cut.Segments[0].(*widget.TextSegment).Style.Inline) {
				t.Fatal("every piece must end its row (an inline piece can start at the right edge)")
			}
		})
	}
}

// TestAnswerWithLineBreaksNeverWrapsPerCharacter guards against Fyne v2.7.1 laying an
// inline segment that starts within a character of the right edge out one character per
// row: a model answer with line breaks (one Markdown text node per line) turned into
// vertical text at some window widths. Every width from 200 to 900 must lay it out in a
// few rows, and each line of the answer starts a row.
func TestAnswerWithLineBreaksNeverWrapsPerCharacter(t *testing.T) {
	test.NewTempApp(t)
	answer := " Alace was very sweet and strong. He was sad because he was always much fun to keep his castle. One day, Ann was walking to the park. \n" +
		"As he was walking, he saw a big bird flying in the sky. The bird said, \"I need something to bring to unique.\" \n" +
		"He was very happy and said, \"I'm okay, but you can't wait to help you.\" And so, “No, you need to go for something new.” \n" +
		"The bird was happy to see his friends. He had a small adventure instead of their nest, and he couldn't wait to go home."
	rt := widget.NewRichText(boundSegments(markdownSegments(answer))...)
	rt.Wrapping = fyne.TextWrapWord
	w := test.NewWindow(rt)
	defer w.Close()
	row := widget.NewRichTextFromMarkdown("x").MinSize().Height
	for width := float32(200); width < 900; width++ {
		rt.Resize(fyne.NewSize(width, 2000))
		if h := rt.MinSize().Height; h > 24*row {
			t.Fatalf("at width %.0f the answer takes %.0f px (%.0f rows): laid out per character", width, h, h/row)
		}
	}
	if got := rt.String(); !strings.Contains(got, "the park.\nAs he was walking") {
		t.Fatalf("a single newline must stay a line break: %q", got)
	}
}
