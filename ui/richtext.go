package ui

import (
	"net/url"
	"strings"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
	"github.com/yuin/goldmark/util"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/widget"
)

// The chat's rich text: Markdown to Fyne segments, and the workarounds for Fyne's
// layout of them. Everything here is a pure function of its input (richtext_test.go).

// markdownSegments renders a chat answer's Markdown as rich-text segments. It follows
// Fyne's own renderer (widget.NewRichTextFromMarkdown) block for block, with what a chat
// answer needs on top:
//   - a single newline is a line break, as LM Studio and Open WebUI show it (models
//     write one thought per line; Fyne ran such lines together);
//   - the text keeps its spaces, no more and no fewer: Fyne put a space between any two
//     adjacent text nodes, and goldmark splits "fairie!" before the "!" (it might open
//     an image), which read "fairie !";
//   - raw HTML and <autolinks> keep their text (Fyne dropped them), and an image shows
//     as a link to it (Fyne would fetch it while the answer streams);
//   - a paragraph's inline pieces of one style are one segment, see mergeRuns.
func markdownSegments(src string) []widget.RichTextSegment {
	source := []byte(src)
	doc := goldmark.New().Parser().Parse(text.NewReader(source))
	r := mdRenderer{src: source}
	return mergeRuns(r.blocks(doc, false))
}

type mdRenderer struct{ src []byte }

// blocks renders n's block children; quoted is inside a blockquote.
func (r mdRenderer) blocks(n ast.Node, quoted bool) []widget.RichTextSegment {
	var out []widget.RichTextSegment
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		out = append(out, r.block(c, quoted)...)
	}
	return out
}

func (r mdRenderer) block(n ast.Node, quoted bool) []widget.RichTextSegment {
	switch b := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		segs := r.inlines(n, inlineBase(quoted))
		if _, para := n.(*ast.Paragraph); para {
			// An empty non-inline segment ends the paragraph's row, as in Fyne.
			segs = append(segs, &widget.TextSegment{Style: widget.RichTextStyleParagraph})
		}
		return segs
	case *ast.Heading:
		style := widget.RichTextStyleParagraph
		style.TextStyle.Bold = true
		switch b.Level {
		case 1:
			style = widget.RichTextStyleHeading
		case 2:
			style = widget.RichTextStyleSubHeading
		}
		return []widget.RichTextSegment{&widget.TextSegment{Style: style, Text: r.plain(n, " ")}}
	case *ast.List:
		list := &widget.ListSegment{Ordered: b.IsOrdered()}
		if b.IsOrdered() {
			list.SetStartNumber(b.Start)
		}
		for item := n.FirstChild(); item != nil; item = item.NextSibling() {
			list.Items = append(list.Items, &widget.ParagraphSegment{Texts: mergeRuns(r.blocks(item, quoted))})
		}
		return []widget.RichTextSegment{list}
	case *ast.ThematicBreak:
		return []widget.RichTextSegment{&widget.SeparatorSegment{}}
	case *ast.CodeBlock, *ast.FencedCodeBlock, *ast.HTMLBlock:
		code := strings.TrimSuffix(r.lines(n), "\n")
		if code == "" {
			return nil
		}
		style := widget.RichTextStyleCodeBlock
		if _, html := n.(*ast.HTMLBlock); html {
			style = widget.RichTextStyleParagraph
		}
		return []widget.RichTextSegment{&widget.TextSegment{Style: style, Text: code}}
	case *ast.Blockquote:
		return r.blocks(n, true)
	}
	return r.blocks(n, quoted) // a block this renderer does not know: keep its text
}

// inlineBase is the style of plain text in a paragraph. Quoted text keeps Fyne's
// blockquote style exactly: that is what RichText indents.
func inlineBase(quoted bool) widget.RichTextStyle {
	if quoted {
		return widget.RichTextStyleBlockquote
	}
	return widget.RichTextStyleInline
}

// inlines renders n's inline children in style. Inside a quote every piece is quote
// text: an inline piece there would start a row of its own (quote text is not inline).
func (r mdRenderer) inlines(n ast.Node, style widget.RichTextStyle) []widget.RichTextSegment {
	quoted := style == widget.RichTextStyleBlockquote
	var out []widget.RichTextSegment
	add := func(s widget.RichTextStyle, t string) {
		if t != "" {
			out = append(out, &widget.TextSegment{Style: s, Text: t})
		}
	}
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch in := c.(type) {
		case *ast.Text, *ast.String, *ast.RawHTML:
			add(style, r.plain(c, "\n"))
		case *ast.Emphasis:
			s := style
			if !quoted {
				if in.Level >= 2 {
					s.TextStyle.Bold = true
				} else {
					s.TextStyle.Italic = true
				}
			}
			out = append(out, r.inlines(c, s)...)
		case *ast.CodeSpan:
			if quoted {
				add(style, r.plain(c, " "))
			} else {
				add(widget.RichTextStyleCodeInline, r.plain(c, " "))
			}
		case *ast.Link:
			out = append(out, r.link(r.plain(c, " "), string(in.Destination), style)...)
		case *ast.AutoLink:
			out = append(out, r.link(string(in.Label(r.src)), string(in.URL(r.src)), style)...)
		case *ast.Image:
			label := r.plain(c, " ")
			if label == "" {
				label = string(in.Destination)
			}
			out = append(out, r.link(label, string(in.Destination), style)...)
		default:
			out = append(out, r.inlines(c, style)...)
		}
	}
	return out
}

// link is a hyperlink, or quote text inside a quote.
func (r mdRenderer) link(label, dest string, style widget.RichTextStyle) []widget.RichTextSegment {
	u, err := url.Parse(dest)
	if err != nil || style == widget.RichTextStyleBlockquote {
		return []widget.RichTextSegment{&widget.TextSegment{Style: style, Text: label}}
	}
	return []widget.RichTextSegment{&widget.HyperlinkSegment{Alignment: fyne.TextAlignLeading, Text: label, URL: u}}
}

// plain is the text under n with nothing added: a line break inside it reads as
// lineBreak ("\n" in running text, " " where one line is wanted: headings, code spans,
// link labels).
func (r mdRenderer) plain(n ast.Node, lineBreak string) string {
	var b strings.Builder
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch t := c.(type) {
		case *ast.Text:
			v := string(textValue(t, r.src))
			if t.SoftLineBreak() || t.HardLineBreak() {
				b.WriteString(strings.TrimRight(v, " \t"))
				b.WriteString(lineBreak)
			} else {
				b.WriteString(v)
			}
		case *ast.String:
			b.Write(t.Value)
		case *ast.RawHTML:
			for i := 0; i < t.Segments.Len(); i++ {
				seg := t.Segments.At(i)
				b.Write(seg.Value(r.src))
			}
		case *ast.AutoLink:
			b.Write(t.Label(r.src))
		}
		return ast.WalkContinue, nil
	})
	return b.String()
}

// textValue is a text node's text as it reads: backslash escapes and entities resolved,
// as goldmark's HTML renderer does (code keeps its backslashes).
func textValue(t *ast.Text, src []byte) []byte {
	v := t.Value(src)
	if t.IsRaw() {
		return v
	}
	return util.ResolveEntityNames(util.ResolveNumericReferences(util.UnescapePunctuations(v)))
}

// lines is the source text of a block's lines (code, HTML).
func (r mdRenderer) lines(n ast.Node) string {
	var b strings.Builder
	ls := n.Lines()
	for i := 0; i < ls.Len(); i++ {
		seg := ls.At(i)
		b.Write(seg.Value(r.src))
	}
	return b.String()
}

// mergeRuns joins each run of adjacent text segments of one style into one segment,
// adding nothing between them. Fyne v2.7.1 lays an inline segment that starts less than
// a character's width from the right edge out one character per row, which turned
// answers with one segment per line into vertical text; within one segment, line breaks
// are plain "\n" and every line starts at the left edge.
func mergeRuns(segs []widget.RichTextSegment) []widget.RichTextSegment {
	out := make([]widget.RichTextSegment, 0, len(segs))
	for _, seg := range segs {
		ts, ok := seg.(*widget.TextSegment)
		if ok && len(out) > 0 {
			if prev, ok := out[len(out)-1].(*widget.TextSegment); ok && prev.Style == ts.Style && prev.Text != "" && ts.Text != "" {
				out[len(out)-1] = &widget.TextSegment{Text: prev.Text + ts.Text, Style: prev.Style}
				continue
			}
		}
		out = append(out, seg)
	}
	return out
}

// maxLineRunes bounds how long a line of one text segment may run before it is cut.
// Fyne's word wrap measures the whole rest of a line for every row it lays out, so a
// pasted 20,000-character paragraph took seconds (quadratic); pieces of bounded length
// keep the cost linear.
const maxLineRunes = 1500

// boundSegments cuts text segments whose lines run longer than maxLineRunes at spaces
// into pieces that each end their row (not inline: an inline piece can start at the
// right edge, see mergeRuns), so a huge paragraph costs linear time; the last piece
// keeps the style.
func boundSegments(segs []widget.RichTextSegment) []widget.RichTextSegment {
	out := make([]widget.RichTextSegment, 0, len(segs))
	for _, seg := range segs {
		ts, ok := seg.(*widget.TextSegment)
		if !ok || len(ts.Text) <= maxLineRunes {
			out = append(out, seg)
			continue
		}
		pieces := splitLongLines(ts.Text, maxLineRunes)
		for i, p := range pieces {
			piece := &widget.TextSegment{Text: p, Style: ts.Style}
			if i < len(pieces)-1 {
				piece.Style.Inline = false
			}
			out = append(out, piece)
		}
	}
	return out
}

// splitLongLines cuts text after a space once a line has run limit runes (or anywhere at
// 2×limit when there is no space); the pieces concatenate back to text.
func splitLongLines(text string, limit int) []string {
	var pieces []string
	start, run := 0, 0 // the piece's first byte; runes since the piece start or the last newline
	for i, r := range text {
		switch {
		case r == '\n':
			run = -1
		case run >= 2*limit:
			pieces = append(pieces, text[start:i])
			start, run = i, 0
		case r == ' ' && run >= limit:
			pieces = append(pieces, text[start:i+1])
			start, run = i+1, -1
		}
		run++
	}
	if start < len(text) || len(pieces) == 0 {
		pieces = append(pieces, text[start:])
	}
	return pieces
}

// plainSegments shows text as it is (a user's message: what they typed, not Markdown).
func plainSegments(text string) []widget.RichTextSegment {
	return boundSegments([]widget.RichTextSegment{&widget.TextSegment{Text: text, Style: widget.RichTextStyleParagraph}})
}
