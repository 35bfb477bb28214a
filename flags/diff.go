package flags

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// FieldChange is one leaf-level difference between two JSON documents,
// named by its JSON pointer. Before or After is nil where the value was
// added or removed.
type FieldChange struct {
	Pointer string          `json:"pointer"`
	Before  json.RawMessage `json:"before,omitempty"`
	After   json.RawMessage `json:"after,omitempty"`
}

// DiffJSON compares two JSON documents and returns their differences, one per
// changed leaf (objects are compared key by key, arrays index by index),
// sorted by pointer. Either document may be nil (absent). It returns an error
// only when a document is not valid JSON.
func DiffJSON(before, after json.RawMessage) ([]FieldChange, error) {
	var a, b any
	if err := decodeOptional(before, &a); err != nil {
		return nil, fmt.Errorf("diff: before: %w", err)
	}
	if err := decodeOptional(after, &b); err != nil {
		return nil, fmt.Errorf("diff: after: %w", err)
	}
	var out []FieldChange
	diffValues("", a, b, before != nil, after != nil, &out)
	sort.Slice(out, func(i, j int) bool { return out[i].Pointer < out[j].Pointer })
	return out, nil
}

func decodeOptional(raw json.RawMessage, v *any) error {
	if raw == nil {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(v)
}

func diffValues(ptr string, a, b any, hasA, hasB bool, out *[]FieldChange) {
	if hasA && hasB {
		switch av := a.(type) {
		case map[string]any:
			if bv, ok := b.(map[string]any); ok {
				keys := make(map[string]bool, len(av)+len(bv))
				for k := range av {
					keys[k] = true
				}
				for k := range bv {
					keys[k] = true
				}
				for k := range keys {
					x, okA := av[k]
					y, okB := bv[k]
					diffValues(ptr+"/"+PointerToken(k), x, y, okA, okB, out)
				}
				return
			}
		case []any:
			if bv, ok := b.([]any); ok {
				for i := 0; i < max(len(av), len(bv)); i++ {
					var x, y any
					if i < len(av) {
						x = av[i]
					}
					if i < len(bv) {
						y = bv[i]
					}
					diffValues(ptr+"/"+strconv.Itoa(i), x, y, i < len(av), i < len(bv), out)
				}
				return
			}
		}
	}
	var ra, rb json.RawMessage
	if hasA {
		ra = mustMarshal(a)
	}
	if hasB {
		rb = mustMarshal(b)
	}
	if hasA == hasB && bytes.Equal(ra, rb) {
		return
	}
	*out = append(*out, FieldChange{Pointer: ptr, Before: ra, After: rb})
}

func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil { // values decoded from JSON always marshal
		panic(fmt.Sprintf("flags: marshal decoded JSON: %v", err))
	}
	return b
}
