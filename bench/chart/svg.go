package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A Chart is a horizontal grouped bar chart: a group of bars under each
// heading (a workload, a rate and percentile, a phase), a bar for each
// series (a target) measured there. Horizontal, because the headings are
// long and the number of targets varies from run to run.
type Chart struct {
	Title    string
	Subtitle []string // lines under the title: the run and how to read it
	Axis     string   // the value axis' label, with its unit
	Log      bool     // a logarithmic value axis
	Series   []Series
	Groups   []Group
}

// A Series is a target, drawn in one colour in every group and the legend.
type Series struct {
	Name   string
	Colour string // an SVG colour
}

// A Group is the bars under one heading.
type Group struct {
	Heading string
	Bars    []Bar
}

// A Bar is one measurement.
type Bar struct {
	Series int // index into Chart.Series
	Value  float64
	Failed bool   // the measurement failed: no bar, the label says so
	Label  string // printed after the bar
}

// The layout, in SVG user units (pixels at 100%). The width is fixed so
// that GitHub shows every chart at the same size; the height follows the
// number of bars.
const (
	chartWidth    = 900
	marginX       = 20  // left and right of everything
	marginTop     = 16  // above the title
	labelRoom     = 190 // right of the plot, for the value labels of the longest bars
	titleSize     = 18
	textSize      = 12  // headings, legend, value labels
	smallSize     = 11  // subtitle, ticks
	lineGap       = 5   // between lines of text
	charWidth     = 0.6 // a character's average width, in units of its font size
	swatchSize    = 12
	swatchGap     = 5  // between a legend swatch and its name
	legendGap     = 18 // between legend entries
	headingHeight = 20 // a group's heading line, above its bars
	barHeight     = 14
	barGap        = 3  // between the bars of a group
	groupGap      = 10 // between groups
	labelGap      = 4  // between a bar's end and its label
	baselineLift  = 3  // a value label's baseline above the bottom of its bar
	tickLabelGap  = 2  // between a tick and its label
	tickLength    = 4
	axisRoom      = 48 // under the plot: ticks and the axis label
	linearTicks   = 5  // about this many steps on a linear axis
	fontFamily    = "DejaVu Sans, Helvetica, Arial, sans-serif"
	gridColour    = "#d9d9d9"
	textColour    = "#222222"
	mutedColour   = "#555555"
	tickSlack     = 1e-9 // relative: a tick at the axis' end is not lost to rounding
)

// plotLeft and plotRight bound the value axis.
const (
	plotLeft  = marginX
	plotRight = chartWidth - marginX - labelRoom
)

// An axis maps values to x coordinates between plotLeft and plotRight.
type axis struct {
	log    bool
	lo, hi float64 // the values at plotLeft and plotRight
	step   float64 // between ticks on a linear axis
}

// newAxis makes the axis for the chart's values: from 0 to a round number
// above the largest, or on a log axis from the power of ten at or below the
// smallest to the one at or above the largest.
func newAxis(c Chart) axis {
	lo, hi := math.Inf(1), 0.0
	for _, g := range c.Groups {
		for _, b := range g.Bars {
			if b.Failed {
				continue
			}
			hi = math.Max(hi, b.Value)
			if b.Value > 0 {
				lo = math.Min(lo, b.Value)
			}
		}
	}
	if c.Log {
		if math.IsInf(lo, 1) {
			return axis{log: true, lo: 1, hi: 10}
		}
		a := axis{log: true, lo: math.Pow(10, math.Floor(math.Log10(lo))), hi: math.Pow(10, math.Ceil(math.Log10(hi)))}
		if a.hi <= a.lo {
			a.hi = a.lo * 10
		}
		return a
	}
	if hi <= 0 {
		hi = 1
	}
	step := niceStep(hi / linearTicks)
	return axis{lo: 0, hi: math.Ceil(hi/step) * step, step: step}
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// x is where v falls on the axis, clamped to the plot.
func (a axis) x(v float64) float64 {
	var f float64
	if a.log {
		if v <= a.lo {
			return plotLeft
		}
		f = math.Log10(v/a.lo) / math.Log10(a.hi/a.lo)
	} else {
		f = (v - a.lo) / (a.hi - a.lo)
	}
	f = math.Max(0, math.Min(1, f))
	return plotLeft + f*(plotRight-plotLeft)
}

// ticks are the values the axis marks: every step on a linear axis, every
// power of ten on a log axis, and 2 and 5 times each when there are few.
func (a axis) ticks() []float64 {
	var ts []float64
	if a.log {
		decades := math.Round(math.Log10(a.hi / a.lo))
		mults := []float64{1}
		if decades <= 3 {
			mults = []float64{1, 2, 5}
		}
		for d := a.lo; d <= a.hi*(1+tickSlack); d *= 10 {
			for _, m := range mults {
				if v := d * m; v <= a.hi*(1+tickSlack) {
					ts = append(ts, v)
				}
			}
		}
		return ts
	}
	for i := 0.0; a.lo+i*a.step <= a.hi*(1+tickSlack); i++ {
		ts = append(ts, a.lo+i*a.step)
	}
	return ts
}

// tickLabel writes v compactly: 250k, 1.5M, 0.5.
func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
	}
}

// textWidth estimates the width of s in a font of size.
func textWidth(s string, size float64) float64 {
	return float64(len([]rune(s))) * size * charWidth
}

// escape makes s safe as XML character data or an attribute value.
func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}

// A renderer writes a Chart as SVG, top to bottom.
type renderer struct {
	c    Chart
	axis axis
	buf  bytes.Buffer
	y    float64 // the top of what comes next
}

// SVG returns the chart as a standalone SVG document.
func (c Chart) SVG() []byte {
	r := &renderer{c: c, axis: newAxis(c), y: marginTop}
	r.title()
	r.legend()
	r.plot()
	height := math.Ceil(r.y)
	var doc bytes.Buffer
	fmt.Fprintf(&doc, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%.0f" viewBox="0 0 %d %.0f" role="img" aria-label="%s" font-family="%s">`+"\n",
		chartWidth, height, chartWidth, height, escape(c.Title), fontFamily)
	fmt.Fprintf(&doc, "<title>%s</title>\n", escape(c.Title))
	fmt.Fprintf(&doc, `<rect x="0" y="0" width="%d" height="%.0f" fill="#ffffff"/>`+"\n", chartWidth, height)
	doc.Write(r.buf.Bytes())
	doc.WriteString("</svg>\n")
	return doc.Bytes()
}

// text writes s at (x, baseline) with the given size, colour and extra
// attributes (anchor, weight).
func (r *renderer) text(x, baseline float64, size int, colour, attrs, s string) {
	fmt.Fprintf(&r.buf, `<text x="%.1f" y="%.1f" font-size="%d" fill="%s"%s>%s</text>`+"\n",
		x, baseline, size, colour, attrs, escape(s))
}

func (r *renderer) title() {
	r.y += titleSize
	r.text(marginX, r.y, titleSize, textColour, ` font-weight="bold"`, r.c.Title)
	r.y += lineGap
	for _, line := range r.c.Subtitle {
		r.y += smallSize + lineGap
		r.text(marginX, r.y, smallSize, mutedColour, "", line)
	}
	r.y += 2 * lineGap
}

// legend writes a swatch and name for each series, wrapping at the width.
func (r *renderer) legend() {
	x := float64(marginX)
	r.y += lineGap
	for _, s := range r.c.Series {
		w := swatchSize + swatchGap + textWidth(s.Name, textSize)
		if x > marginX && x+w > chartWidth-marginX {
			x = marginX
			r.y += swatchSize + lineGap
		}
		fmt.Fprintf(&r.buf, `<rect class="swatch" x="%.1f" y="%.1f" width="%d" height="%d" fill="%s"/>`+"\n",
			x, r.y, swatchSize, swatchSize, s.Colour)
		// The name's baseline a unit above the swatch's bottom looks level with it.
		r.text(x+swatchSize+swatchGap, r.y+swatchSize-1, textSize, textColour, "", s.Name)
		x += w + legendGap
	}
	r.y += swatchSize + 3*lineGap
}

// plot writes the grid, the groups of bars and the value axis under them.
func (r *renderer) plot() {
	top, bottom := r.y, r.y
	for _, g := range r.c.Groups {
		bottom += headingHeight + float64(len(g.Bars))*(barHeight+barGap) + groupGap
	}
	// The grid goes first, so that the bars and labels are drawn over it.
	for _, v := range r.axis.ticks() {
		x := r.axis.x(v)
		fmt.Fprintf(&r.buf, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n",
			x, top, x, bottom+tickLength, gridColour)
		r.text(x, bottom+tickLength+tickLabelGap+smallSize, smallSize, mutedColour, ` text-anchor="middle"`, tickLabel(v))
	}
	fmt.Fprintf(&r.buf, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="1"/>`+"\n",
		plotLeft, bottom, plotRight, bottom, mutedColour)
	for _, g := range r.c.Groups {
		r.y += textSize
		r.text(marginX, r.y, textSize, textColour, ` font-weight="bold"`, g.Heading)
		r.y += headingHeight - textSize
		for _, b := range g.Bars {
			r.bar(b)
			r.y += barHeight + barGap
		}
		r.y += groupGap
	}
	r.text((plotLeft+plotRight)/2, bottom+axisRoom-lineGap-smallSize, textSize, textColour, ` text-anchor="middle"`, r.c.Axis)
	r.y = bottom + axisRoom
}

// bar writes one bar at r.y and its label after it.
func (r *renderer) bar(b Bar) {
	s := r.c.Series[b.Series]
	end := float64(plotLeft)
	if !b.Failed {
		end = r.axis.x(b.Value)
		fmt.Fprintf(&r.buf, `<rect class="bar" x="%d" y="%.1f" width="%.2f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			plotLeft, r.y, end-plotLeft, barHeight, s.Colour, escape(s.Name+": "+b.Label))
	}
	r.text(end+labelGap, r.y+barHeight-baselineLift, textSize, textColour, "", b.Label)
}
