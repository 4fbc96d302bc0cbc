package ui

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/models"
)

// The models table sizes its columns from their contents and the width there is: each
// column gets its widest text, the Model column what is left. When that leaves the
// Model column too little, the least needed columns go (their values stay in the model
// cell's tooltip), so at 800 px nothing overlaps and nothing is cut but a long model
// name, which ends in "…" and shows whole in its tooltip. The header and every row lay
// out with one modelTable, so their columns line up.

// modelCol is one column: its header, the header's tooltip, and when it goes in a
// narrow window (1 first; 0 never).
type modelCol struct {
	header, tip string
	drop        int
}

var modelCols = []modelCol{
	{"Model", "The name a worker serves the model under; hover a name for all its details", 0},
	{"Arch.", "Architecture", 1},
	{"Params", "Parameters", 4},
	{"Quant", "Quantization (the file type)", 0},
	{"Context", "The context the model was trained for, in tokens", 3},
	{"Size", "File size", 0},
	{"Chat", "Chat template: yes = chats use the model's own template; no = the worker falls back to a plain prompt", 2},
	{"Memory CPU / GPU", "Memory a worker needs at its default context: RAM when it runs on the CPU / device memory with every layer on a GPU", 0},
}

const (
	modelColName   = 0
	modelColMemory = 7
	// minModelWidth is the least the Model column keeps before other columns go.
	minModelWidth = 150
)

// memoryReserve is as wide as a memory cell gets, so the columns do not move when the
// estimates arrive.
const memoryReserve = "888.8 MiB / 888.8 MiB"

// modelTable is the column widths shared by the header and the rows (UI thread only).
type modelTable struct {
	natural []float32 // each column's widest text, header or cell, with the label's padding
	width   float32   // the width widths were computed for
	widths  []float32 // 0 = the column is hidden
}

func newModelTable() *modelTable {
	t := &modelTable{}
	t.measure(nil)
	return t
}

// textWidth is the width a label needs to show text whole. Fyne's truncation measures
// against a whole number of pixels and its shaper's advance can exceed MeasureText's by
// a fraction, so the measure is rounded up with a pixel to spare ("1.1 MiB" in exactly
// its measured width was drawn "1.1 …").
func textWidth(text string, style fyne.TextStyle) float32 {
	w := fyne.MeasureText(text, theme.TextSize(), style).Width
	return float32(math.Ceil(float64(w))) + 1 + 2*theme.InnerPadding()
}

// measure takes the widest text of each column from the header and rows.
func (t *modelTable) measure(rows [][]string) {
	t.natural = make([]float32, len(modelCols))
	for i, c := range modelCols {
		t.natural[i] = textWidth(c.header, fyne.TextStyle{Bold: true})
	}
	t.natural[modelColMemory] = max(t.natural[modelColMemory], textWidth(memoryReserve, fyne.TextStyle{}))
	for _, r := range rows {
		for i, text := range r {
			t.natural[i] = max(t.natural[i], textWidth(text, fyne.TextStyle{}))
		}
	}
	t.widths = nil
}

// columns is each column's width in a row of width (0 = hidden).
func (t *modelTable) columns(width float32) []float32 {
	if t.widths != nil && t.width == width {
		return t.widths
	}
	n := len(modelCols)
	pad := theme.Padding()
	shown := make([]bool, n)
	for i := range shown {
		shown[i] = true
	}
	others := func() (sum float32) { // the other shown columns and the gaps between all
		for i, ok := range shown {
			if ok && i != modelColName {
				sum += t.natural[i] + pad
			}
		}
		return sum
	}
	left := width - others()
	for left < minModelWidth {
		next := -1
		for i, c := range modelCols {
			if shown[i] && c.drop > 0 && (next < 0 || c.drop < modelCols[next].drop) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		shown[next] = false
		left = width - others()
	}
	widths := make([]float32, n)
	count := 0
	for i, ok := range shown {
		if ok {
			widths[i] = t.natural[i]
			count++
		}
	}
	switch {
	case left >= t.natural[modelColName]:
		// Room to spare: the Model column gets its widest name, and the rest is spread
		// over the columns so the table fills the width.
		extra := (left - t.natural[modelColName]) / float32(count)
		for i := range widths {
			if widths[i] > 0 {
				widths[i] += extra
			}
		}
	case left >= minModelWidth:
		widths[modelColName] = left // long names end in "…", whole in the tooltip
	default:
		// Too narrow even for the columns that never go: everything shrinks (cut cells
		// show their text as a tooltip).
		widths[modelColName] = max(left, width/4)
		var sum float32
		for i, w := range widths {
			if i != modelColName {
				sum += w
			}
		}
		rest := width - widths[modelColName] - pad*float32(count-1)
		scale := min(max(rest, 0)/max(sum, 1), 1)
		for i := range widths {
			if i != modelColName {
				widths[i] *= scale
			}
		}
	}
	t.width, t.widths = width, widths
	return widths
}

// tableLayout places a header's or a row's cells in the table's columns; hidden
// columns' cells are hidden. Its minimum width is nothing: a narrow window cuts the
// Model column and drops others instead of growing.
type tableLayout struct{ t *modelTable }

// Layout places the cells.
func (l tableLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	widths := l.t.columns(size.Width)
	pad := theme.Padding()
	x := float32(0)
	for i, o := range objs {
		w := widths[min(i, len(widths)-1)]
		if w == 0 {
			o.Hide()
			continue
		}
		o.Show()
		o.Move(fyne.NewPos(x, 0))
		o.Resize(fyne.NewSize(w, size.Height))
		x += w + pad
	}
}

// MinSize is the tallest cell's height.
func (l tableLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var h float32
	for _, o := range objs {
		h = max(h, o.MinSize().Height)
	}
	return fyne.NewSize(0, h)
}

// cellLabel is a table cell: it truncates with "…" and has a tooltip: tip when set,
// else its whole text while it is cut.
type cellLabel struct {
	widget.Label
	tips *tipLayer
	tip  string
}

func newCellLabel(tips *tipLayer, text, tip string, style fyne.TextStyle) *cellLabel {
	l := &cellLabel{tips: tips, tip: tip}
	l.Text, l.TextStyle = text, style
	l.Truncation = fyne.TextTruncateEllipsis
	l.ExtendBaseWidget(l)
	return l
}

// set changes the text and tooltip, repainting only when the text changed.
func (l *cellLabel) set(text, tip string) {
	l.tip = tip
	if l.Text != text {
		l.SetText(text)
	}
}

// cut reports whether the cell is too narrow for its text.
func (l *cellLabel) cut() bool {
	return l.Text != "" && textWidth(l.Text, l.TextStyle) > l.Size().Width+0.5
}

// tooltip is what hovering shows: the tip, else the whole text while it is cut.
func (l *cellLabel) tooltip() string {
	if l.tip != "" {
		return l.tip
	}
	if l.cut() {
		return l.Text
	}
	return ""
}

// MouseIn starts the tooltip's wait.
func (l *cellLabel) MouseIn(ev *desktop.MouseEvent) { l.tips.hover(ev.AbsolutePosition, l.tooltip()) }

// MouseMoved follows the pointer.
func (l *cellLabel) MouseMoved(ev *desktop.MouseEvent) { l.tips.move(ev.AbsolutePosition) }

// MouseOut hides the tooltip.
func (l *cellLabel) MouseOut() { l.tips.leave() }

// modelCells is one row of the table as text, but for the memory estimate.
func modelCells(info models.Info) []string {
	chat := "no"
	if info.HasChatTemplate {
		chat = "yes"
	}
	return []string{info.Name, info.Architecture, info.ParametersText, info.Quantization,
		fmt.Sprint(info.ContextLength), models.FormatBytes(uint64(info.FileSize)), chat, ""}
}

// modelDetails is the Model cell's tooltip: everything about the file, also what the
// columns a narrow window hides would say.
func modelDetails(info models.Info, memoryTip string) string {
	chat := "no chat template: the worker uses a plain prompt"
	if info.HasChatTemplate {
		chat = "chat template included"
	}
	lines := []string{
		info.Name,
		info.Path,
		fmt.Sprintf("%s, %s parameters, %s, trained context %d tokens", info.Architecture, info.ParametersText, info.Quantization, info.ContextLength),
		models.FormatBytes(uint64(info.FileSize)) + "; " + chat,
	}
	if memoryTip != "" {
		lines = append(lines, memoryTip)
	}
	return strings.Join(lines, "\n")
}

// unreadableText is an unreadable file's row: its name and the reason in short (the
// tooltip has the whole error).
func unreadableText(info models.Info) string {
	why := info.Err.Error()
	switch {
	case errors.Is(info.Err, models.ErrTruncated):
		why = "damaged: the file is cut short (an unfinished download or copy?)"
	case errors.Is(info.Err, models.ErrNotGGUF):
		why = "not a GGUF model file"
		if _, after, ok := strings.Cut(info.Err.Error(), models.ErrNotGGUF.Error()+": "); ok {
			why += ": " + after
		}
	}
	return fmt.Sprintf("%s (%s) — %s", info.Name, filepath.Base(info.Path), why)
}

// estimateSummary is the memory cell, "19.1 MiB / 38.7 MiB" (RAM to run on the CPU /
// device memory to offload every layer, at the worker's default context), and its
// tooltip, which names that context when it is not the one the model was trained for.
func estimateSummary(info models.Info, e models.Estimate, err error) (cell, tip string) {
	if err != nil {
		return "?", "No estimate: " + err.Error()
	}
	cell = models.FormatBytes(e.CPUOnlyRAM) + " / " + models.FormatBytes(e.FullOffloadVRAM)
	tip = fmt.Sprintf("%s of RAM to run on the CPU, %s of device memory with every layer on a GPU, at a context of %d tokens",
		models.FormatBytes(e.CPUOnlyRAM), models.FormatBytes(e.FullOffloadVRAM), e.CtxSize)
	if e.CtxSize != info.ContextLength {
		tip += fmt.Sprintf(" (the worker's default; the model was trained for %d)", info.ContextLength)
	}
	return cell, tip
}
