package flags

import (
	"fmt"
	"strings"
)

// Explain renders r as one sentence for people: the CLI's eval command, the
// UI's "why did this player get that?" panel, logs. Rules are numbered from
// 1 as the UI lists them. For example:
//
//	rule 'vip-players' (#1) matched; bucket 4213 of 10000 on userId → variant treatment
//
// It cannot fail; its wording may change and is not meant for parsing.
func Explain(r Result) string {
	var b strings.Builder
	switch r.Reason {
	case ReasonError:
		switch r.ErrorCode {
		case CodeFlagNotFound:
			fmt.Fprintf(&b, "flag '%s' not found", r.Key)
		case CodeTypeMismatch:
			fmt.Fprintf(&b, "flag '%s' is of type %s, not the type asked for", r.Key, r.Type)
		default:
			fmt.Fprintf(&b, "flag '%s' could not be evaluated", r.Key)
			if r.ErrorMessage != "" {
				fmt.Fprintf(&b, ": %s", r.ErrorMessage)
			}
		}
		fmt.Fprintf(&b, " → error %s", r.ErrorCode)
		return b.String()
	case ReasonDisabled:
		fmt.Fprintf(&b, "flag '%s' is disabled → off variant %s", r.Key, r.Variant)
		return b.String()
	case ReasonStatic:
		fmt.Fprintf(&b, "flag '%s' has no rules or split → default variant %s", r.Key, r.Variant)
		return b.String()
	}

	if r.RuleIndex >= 0 {
		fmt.Fprintf(&b, "rule '%s' (#%d) matched", r.RuleID, r.RuleIndex+1)
	} else {
		b.WriteString("no rule matched")
	}
	switch {
	case r.Missing != "" && r.RuleIndex >= 0:
		fmt.Fprintf(&b, " but its split buckets on %s, which the context lacks", r.Missing)
	case r.Missing != "":
		fmt.Fprintf(&b, "; the default split buckets on %s, which the context lacks", r.Missing)
	case r.Reason == ReasonSplit:
		fmt.Fprintf(&b, "; bucket %d of %d on %s", r.Bucket, r.TotalWeight, r.BucketBy)
	}
	switch r.Reason {
	case ReasonDefault:
		fmt.Fprintf(&b, " → default variant %s", r.Variant)
	default:
		fmt.Fprintf(&b, " → variant %s", r.Variant)
	}
	if r.ErrorCode != "" {
		fmt.Fprintf(&b, " (%s)", r.ErrorCode)
	}
	return b.String()
}
