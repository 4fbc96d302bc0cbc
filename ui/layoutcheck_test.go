package ui

import (
	"fmt"
	"go/ast"
	"reflect"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// layoutProblems walks o as it is laid out and reports what a user would see as broken:
//   - an object smaller than its MinSize: its content is cut (a row that overflows, a
//     button whose label is clipped);
//   - a child of one of our containers lying outside the container, or two siblings that
//     overlap (in a layout that does not stack them on purpose);
//   - a label cut short with an ellipsis that has no tooltip saying the whole text.
//
// Fyne's widgets are trusted with their insides (a button's background lies under its
// label by design) but checked for being cut themselves.
func layoutProblems(o fyne.CanvasObject) []string {
	var out []string
	var walk func(o fyne.CanvasObject, abs fyne.Position, path string)
	walk = func(o fyne.CanvasObject, abs fyne.Position, path string) {
		if o == nil || !o.Visible() {
			return
		}
		size, min := o.Size(), o.MinSize()
		here := path + "/" + shortType(o)
		if d := describe(o); d != "" {
			here += " " + d
		}
		if size.Width > 0 && size.Height > 0 { // zero: never laid out (a hidden tab's)
			if cut := cutText(o); cut != "" {
				out = append(out, fmt.Sprintf("%s at %v: text cut without a tooltip (%s)", here, abs, cut))
			}
			if !mayShrink(o) && (size.Width+0.5 < min.Width || size.Height+0.5 < min.Height) {
				out = append(out, fmt.Sprintf("%s at %v is %.0f×%.0f, needs %.0f×%.0f: cut", here, abs, size.Width, size.Height, min.Width, min.Height))
			}
		}
		kids := children(o)
		if c, ok := o.(*fyne.Container); ok && arranges(c) {
			out = append(out, siblingProblems(kids, size, here)...)
		}
		for _, k := range kids {
			walk(k, abs.Add(k.Position()), here)
		}
	}
	walk(o, fyne.Position{}, "")
	return out
}

// siblingProblems reports children outside their container and children that overlap.
func siblingProblems(kids []fyne.CanvasObject, size fyne.Size, path string) []string {
	var out []string
	const slack = 1
	var shown []fyne.CanvasObject
	for _, k := range kids {
		if !k.Visible() || k.Size().Width <= 0 || k.Size().Height <= 0 {
			continue
		}
		shown = append(shown, k)
		p, s := k.Position(), k.Size()
		if p.X < -slack || p.Y < -slack || p.X+s.Width > size.Width+slack || p.Y+s.Height > size.Height+slack {
			out = append(out, fmt.Sprintf("%s: %s at %v size %v lies outside its container (%v)", path, shortType(k), p, s, size))
		}
	}
	for i, a := range shown {
		for _, b := range shown[i+1:] {
			pa, sa, pb, sb := a.Position(), a.Size(), b.Position(), b.Size()
			w := min(pa.X+sa.Width, pb.X+sb.Width) - max(pa.X, pb.X)
			h := min(pa.Y+sa.Height, pb.Y+sb.Height) - max(pa.Y, pb.Y)
			if w > slack && h > slack {
				out = append(out, fmt.Sprintf("%s: %s and %s overlap by %.0f×%.0f", path, shortType(a)+" "+describe(a), shortType(b)+" "+describe(b), w, h))
			}
		}
	}
	return out
}

// arranges reports whether c's layout places its children side by side (so overlap is a
// fault), rather than on top of each other on purpose (stack, centre, none, tooltips).
func arranges(c *fyne.Container) bool {
	if c.Layout == nil {
		return false
	}
	switch strings.TrimPrefix(fmt.Sprintf("%T", c.Layout), "*") {
	case "layout.stackLayout", "layout.centerLayout", "ui.tipLayout", "ui.rootLayout":
		return false
	}
	return true
}

// mayShrink lists what is meant to be smaller than its content: scrolling views, and
// labels that truncate (cutText checks those have a tooltip).
func mayShrink(o fyne.CanvasObject) bool {
	switch v := o.(type) {
	case *widget.Label:
		return v.Truncation != fyne.TextTruncateOff
	case *tipLabel:
		return true
	case *widget.RichText:
		return v.Truncation != fyne.TextTruncateOff
	case *canvas.Text, *canvas.Image, *canvas.Rectangle, *canvas.Line, *canvas.Circle:
		return true // drawn by their widget, which is checked
	}
	if t := reflect.TypeOf(o).Elem(); strings.HasPrefix(t.PkgPath(), "fyne.io/") && !ast.IsExported(t.Name()) {
		return true // a widget's own part (a password entry's eye): the widget is checked
	}
	return strings.Contains(fmt.Sprintf("%T", o), "Scroll") || strings.Contains(fmt.Sprintf("%T", o), "scroll")
}

// cutText is the text of a label cut short with no tooltip, or "".
func cutText(o fyne.CanvasObject) string {
	l, ok := o.(*widget.Label)
	if !ok || l.Truncation == fyne.TextTruncateOff || l.Text == "" {
		return ""
	}
	style := l.TextStyle
	need := fyne.MeasureText(l.Text, theme.TextSize(), style).Width + 2*theme.InnerPadding()
	if need <= l.Size().Width+0.5 {
		return ""
	}
	return fmt.Sprintf("%q in %.0f px", l.Text, l.Size().Width)
}

// children are the objects o draws: a container's, or a widget's renderer's.
func children(o fyne.CanvasObject) []fyne.CanvasObject {
	switch v := o.(type) {
	case *fyne.Container:
		return v.Objects
	case fyne.Widget:
		return test.WidgetRenderer(v).Objects()
	}
	return nil
}

func shortType(o fyne.CanvasObject) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", o), "*")
}

// describe names o by its text, where it has one.
func describe(o fyne.CanvasObject) string {
	switch v := o.(type) {
	case *widget.Label:
		return fmt.Sprintf("%.40q", v.Text)
	case *tipLabel:
		return fmt.Sprintf("%.40q", v.Text)
	case *widget.Button:
		return fmt.Sprintf("%.40q", v.Text)
	case *tipButton:
		return fmt.Sprintf("%.40q", v.Text)
	case *canvas.Text:
		return fmt.Sprintf("%.40q", v.Text)
	case *widget.Check:
		return fmt.Sprintf("%.40q", v.Text)
	}
	return ""
}
