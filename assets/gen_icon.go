//go:build ignore

// gen_icon draws assets/icon.png: an amber honeycomb hexagon with a striped bee body.
// Run with `go run assets/gen_icon.go` from the repository root.
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
)

const size = 512

func main() {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	c := float64(size) / 2
	amber := color.NRGBA{0xF5, 0xA6, 0x23, 0xFF}
	amberDark := color.NRGBA{0xC9, 0x7C, 0x0A, 0xFF}
	ink := color.NRGBA{0x2B, 0x22, 0x1C, 0xFF}
	cream := color.NRGBA{0xFF, 0xF4, 0xDC, 0xFF}
	wing := color.NRGBA{0xE8, 0xF4, 0xFF, 0xE6}

	// Supersample 4x4 per pixel for smooth edges.
	const ss = 4
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var r, g, b, a float64
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					px := float64(x) + (float64(sx)+0.5)/ss
					py := float64(y) + (float64(sy)+0.5)/ss
					col, ok := shade(px-c, py-c, amber, amberDark, ink, cream, wing)
					if !ok {
						continue
					}
					fa := float64(col.A) / 255
					r += float64(col.R) * fa
					g += float64(col.G) * fa
					b += float64(col.B) * fa
					a += fa
				}
			}
			if a == 0 {
				continue
			}
			n := float64(ss * ss)
			img.SetNRGBA(x, y, color.NRGBA{
				R: uint8(r / a), G: uint8(g / a), B: uint8(b / a), A: uint8(255 * a / n),
			})
		}
	}
	f, err := os.Create("assets/icon.png")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		log.Fatal(err)
	}
}

// hexDist is the hexagon "radius" of (x, y): a pointy-top hexagon of circumradius R
// contains the points with hexDist <= R*cos(30°).
func hexDist(x, y float64) float64 {
	x, y = math.Abs(x), math.Abs(y)
	return math.Max(x, x*0.5+y*math.Sqrt(3)/2)
}

func shade(x, y float64, amber, amberDark, ink, cream, wing color.NRGBA) (color.NRGBA, bool) {
	const R = 240.0
	inner := R * math.Sqrt(3) / 2
	d := hexDist(y, x) // rotate: flat-top hexagon
	if d > inner {
		return color.NRGBA{}, false
	}
	base := amber
	if d > inner-22 {
		base = amberDark
	}
	// Body: an ellipse with three dark stripes.
	bx, by := x, y-40
	e := (bx*bx)/(92*92) + (by*by)/(125*125)
	if e <= 1 {
		if e >= 0.88 {
			return ink, true
		}
		switch {
		case by > -62 && by < -30, by > 5 && by < 37, by > 72 && by < 100:
			return ink, true
		}
		return cream, true
	}
	// Wings: two tilted ellipses behind the body, up and out.
	for _, s := range []float64{-1, 1} {
		wx, wy := x-s*88, y+20
		// rotate by ±35° so the wings fan outwards
		ca, sa := math.Cos(s*0.6), math.Sin(s*0.6)
		rx, ry := wx*ca+wy*sa, -wx*sa+wy*ca
		q := (rx*rx)/(50*50) + (ry*ry)/(82*82)
		if q <= 1 {
			if q >= 0.80 {
				return ink, true
			}
			return wing, true
		}
	}
	// Head.
	hx, hy := x, y-(-110)
	if hx*hx+hy*hy <= 46*46 {
		return ink, true
	}
	return base, true
}
