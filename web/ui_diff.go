package web

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/solsticehq/solstice/flags"
)

// diffRow is one row of a side-by-side diff: a line on the left (before),
// on the right (after), or both.
type diffRow struct {
	Kind          string // "same", "del", "add", "change" or "gap" (unchanged lines folded away)
	Left, Right   string
	LeftN, RightN int // line numbers from 1; 0 where the side is empty
	Folded        int // for "gap": how many unchanged lines
}

// fileDiff is the side-by-side diff of one object, with its leaf-level
// changes.
type fileDiff struct {
	Title  string
	Op     string // create, update, delete
	Rows   []diffRow
	Fields []flags.FieldChange
}

// diffContext is how many unchanged lines stay around a change.
const diffContext = 3

// maxDiffCells bounds the work of one line diff (lines before × lines
// after); larger documents are shown as a whole removal and addition.
const maxDiffCells = 4_000_000

// prettyJSON indents a JSON document for reading; nil stays empty.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// sideBySide diffs two JSON documents line by line, their keys in canonical
// order so that only real changes show.
func sideBySide(before, after json.RawMessage) []diffRow {
	canon := func(raw json.RawMessage) string {
		if len(raw) == 0 {
			return ""
		}
		if c, err := flags.Canonical(raw); err == nil {
			raw = c
		}
		return prettyJSON(raw)
	}
	return foldRows(diffLines(lines(canon(before)), lines(canon(after))))
}

// diffLines aligns a and b on a longest common subsequence of lines and
// pairs the removals and additions between two common lines as changes.
func diffLines(a, b []string) []diffRow {
	var ops []diffRow
	if len(a)*len(b) > maxDiffCells {
		for i, l := range a {
			ops = append(ops, diffRow{Kind: "del", Left: l, LeftN: i + 1})
		}
		for j, l := range b {
			ops = append(ops, diffRow{Kind: "add", Right: l, RightN: j + 1})
		}
		return pairChanges(ops)
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, diffRow{Kind: "same", Left: a[i], Right: b[j], LeftN: i + 1, RightN: j + 1})
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			ops = append(ops, diffRow{Kind: "add", Right: b[j], RightN: j + 1})
			j++
		default:
			ops = append(ops, diffRow{Kind: "del", Left: a[i], LeftN: i + 1})
			i++
		}
	}
	return pairChanges(ops)
}

// pairChanges merges each run of removals and additions into rows that
// show the old line beside the new one.
func pairChanges(ops []diffRow) []diffRow {
	var out []diffRow
	for k := 0; k < len(ops); {
		if ops[k].Kind == "same" {
			out = append(out, ops[k])
			k++
			continue
		}
		var dels, adds []diffRow
		for ; k < len(ops) && ops[k].Kind != "same"; k++ {
			if ops[k].Kind == "del" {
				dels = append(dels, ops[k])
			} else {
				adds = append(adds, ops[k])
			}
		}
		for n := 0; n < max(len(dels), len(adds)); n++ {
			var r diffRow
			switch {
			case n < len(dels) && n < len(adds):
				r = diffRow{Kind: "change", Left: dels[n].Left, LeftN: dels[n].LeftN, Right: adds[n].Right, RightN: adds[n].RightN}
			case n < len(dels):
				r = dels[n]
			default:
				r = adds[n]
			}
			out = append(out, r)
		}
	}
	return out
}

// foldRows replaces long runs of unchanged lines by a gap row, keeping
// diffContext lines around each change.
func foldRows(rows []diffRow) []diffRow {
	keep := make([]bool, len(rows))
	for i, r := range rows {
		if r.Kind == "same" {
			continue
		}
		for k := max(0, i-diffContext); k <= min(len(rows)-1, i+diffContext); k++ {
			keep[k] = true
		}
	}
	var out []diffRow
	for i := 0; i < len(rows); {
		if keep[i] {
			out = append(out, rows[i])
			i++
			continue
		}
		j := i
		for j < len(rows) && !keep[j] {
			j++
		}
		if j-i <= 2 { // a gap row would save nothing
			out = append(out, rows[i:j]...)
		} else {
			out = append(out, diffRow{Kind: "gap", Folded: j - i})
		}
		i = j
	}
	return out
}

// changeDiffs renders a revision's (or a comparison's) changes.
func changeDiffs(changes []flags.Change) []fileDiff {
	out := make([]fileDiff, 0, len(changes))
	for _, ch := range changes {
		fields, _ := flags.DiffJSON(ch.Before, ch.After) // stored documents are JSON
		out = append(out, fileDiff{Title: string(ch.Kind) + " " + ch.Key, Op: ch.Op(), Rows: sideBySide(ch.Before, ch.After), Fields: fields})
	}
	return out
}
