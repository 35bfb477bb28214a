package web

import (
	"encoding/json"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/flags"
)

// fieldCtx is what the recursive "field" template gets: one node of a
// schema form and the editor it belongs to.
type fieldCtx struct {
	Ed   *editor
	Node *formNode
}

// funcs are the template functions.
func (u *ui) funcs() template.FuncMap {
	return template.FuncMap{
		"asset": func(name string) string { return "/static/" + name + "?v=" + u.assets[name] },
		"ago":   func(t time.Time) string { return ago(time.Now(), t) },
		"agoPtr": func(t *time.Time) string {
			if t == nil {
				return "never"
			}
			return ago(time.Now(), *t)
		},
		"datetime": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"iso":         func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"compact":     jsonCompact,
		"fid":         fieldID,
		"lenField":    lenField,
		"configURL":   configURL,
		"revisionURL": revisionURL,
		"changeURL":   changeURL,
		"field":       func(e *editor, n *formNode) fieldCtx { return fieldCtx{Ed: e, Node: n} },
		"sub":         func(a, b int64) int64 { return a - b },
		"add":         func(a, b int) int { return a + b },
		"join":        strings.Join,
		"changedKeys": func(diff []flags.Change) string {
			keys := make([]string, 0, len(diff))
			for _, ch := range diff {
				keys = append(keys, ch.Key)
			}
			if len(keys) > 6 {
				return strings.Join(keys[:6], ", ") + " and " + strconv.Itoa(len(keys)-6) + " more"
			}
			return strings.Join(keys, ", ")
		},
		"jsonText": func(raw json.RawMessage) string { return string(raw) },
		"list":     func(s ...string) []string { return s },
		"add64":    func(a, b int64) int64 { return a + b },
		"errv": func(e *editor, ptr string) errView {
			return errView{ID: fieldID(ptr), Errs: e.ErrorsAt(ptr)}
		},
		"kill": func(csrf string, env flags.Environment, key string, enabled bool, off, ret string) map[string]any {
			return map[string]any{"CSRF": csrf, "Env": env, "Key": key, "Enabled": enabled, "Off": off, "Return": ret}
		},
		"rolesForm": func(roles []accounts.Role, envs []string, current map[string]accounts.Role, errs map[string]string) rolesForm {
			if current == nil {
				current = map[string]accounts.Role{}
			}
			return rolesForm{Roles: roles, Envs: envs, Current: current, Errors: errs}
		},
	}
}

// errView is what the "errs" template gets: the errors of one input and
// the id they are described by.
type errView struct {
	ID   string
	Errs []placedError
}

// rolesForm is what the "roles" template gets.
type rolesForm struct {
	Roles   []accounts.Role
	Envs    []string
	Current map[string]accounts.Role
	Errors  map[string]string
}
