package ui

import (
	"slices"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// tableColumn is one column of a table that fits its width (fitTable).
type tableColumn struct {
	title string
	width float32 // what it needs for its usual content
	keep  int     // when the table is narrow, columns of lower keep go first; 0 never goes
	grow  bool    // takes a share of the width left over (names, ids)
}

// fitTable shows as many of a table's columns as fit its width, leaving out the least
// needed first, and gives what is left to the growing ones: a table wider than its view
// hid its row actions behind a horizontal scroll at 800 px. shown maps the table's
// columns to the caller's (UI thread only).
type fitTable struct {
	cols   []tableColumn
	shown  []int // indices into cols, in order
	table  *widget.Table
	width  float32 // the width shown was fitted to
	onFit  func()  // called after shown changes
	holder *fyne.Container
}

func newFitTable(table *widget.Table, cols []tableColumn) *fitTable {
	f := &fitTable{cols: cols, table: table, width: -1}
	for i := range cols {
		f.shown = append(f.shown, i)
	}
	f.holder = container.New(f, table)
	return f
}

// Layout fits the columns to size, then lays the table out.
func (f *fitTable) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	if size.Width != f.width {
		f.width = size.Width
		// Fyne puts a padding after each column.
		shown, widths := fitColumns(f.cols, size.Width, theme.Padding())
		changed := !slices.Equal(shown, f.shown)
		f.shown = shown
		for i, w := range widths {
			f.table.SetColumnWidth(i, w)
		}
		if changed {
			f.table.Refresh()
			if f.onFit != nil {
				f.onFit()
			}
		}
	}
	for _, o := range objs {
		o.Resize(size)
		o.Move(fyne.Position{})
	}
}

// MinSize is the table's: the columns fit any width.
func (f *fitTable) MinSize(objs []fyne.CanvasObject) fyne.Size { return objs[0].MinSize() }

// col is the caller's column shown as the table's column i.
func (f *fitTable) col(i int) int {
	if i < 0 || i >= len(f.shown) {
		return -1
	}
	return f.shown[i]
}

// fitColumns chooses the columns that fit width, each followed by gap (dropping the
// lowest keep first, the last of equal keep first), and their widths, the growing
// columns sharing what is left.
func fitColumns(cols []tableColumn, width, gap float32) (shown []int, widths []float32) {
	dropped := make([]bool, len(cols))
	total := float32(0)
	for _, c := range cols {
		total += c.width + gap
	}
	for total > width {
		worst := -1
		for i, c := range cols {
			if !dropped[i] && c.keep > 0 && (worst < 0 || c.keep <= cols[worst].keep) {
				worst = i
			}
		}
		if worst < 0 {
			break // only the columns that never go are left
		}
		dropped[worst] = true
		total -= cols[worst].width + gap
	}
	growing := 0
	for i, c := range cols {
		if !dropped[i] {
			shown = append(shown, i)
			if c.grow {
				growing++
			}
		}
	}
	extra := float32(0)
	if growing > 0 && width > total {
		extra = (width - total) / float32(growing)
	}
	for _, i := range shown {
		w := cols[i].width
		if cols[i].grow {
			w += extra
		}
		widths = append(widths, w)
	}
	return shown, widths
}
