package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
)

func TestEndpointValidate(t *testing.T) {
	good := Endpoint{Name: "ops", URL: "https://hooks.example.com/solstice?team=live", Secret: specSecret}
	tests := []struct {
		name string
		edit func(*Endpoint)
		want []solstice.FieldError // nil: valid
	}{
		{"valid", func(*Endpoint) {}, nil},
		{"http and a port", func(e *Endpoint) { e.URL = "http://127.0.0.1:8081/in" }, nil},
		{"rotation", func(e *Endpoint) { e.Secret = specSecret + " " + otherSecret }, nil},
		{"raw secret", func(e *Endpoint) { e.Secret = "a-raw-secret-of-24-bytes" }, nil},
		{"all missing", func(e *Endpoint) { *e = Endpoint{} }, []solstice.FieldError{
			{Pointer: "/name", Message: "is required"},
			{Pointer: "/url", Message: "is required"},
			{Pointer: "/secret", Message: "is required"},
		}},
		{"name not a key", func(e *Endpoint) { e.Name = "Ops Team" }, []solstice.FieldError{
			{Pointer: "/name", Message: "must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"},
		}},
		{"relative URL", func(e *Endpoint) { e.URL = "/hooks" }, []solstice.FieldError{
			{Pointer: "/url", Message: "must be an absolute http:// or https:// URL"},
		}},
		{"ftp URL", func(e *Endpoint) { e.URL = "ftp://example.com/x" }, []solstice.FieldError{
			{Pointer: "/url", Message: "must be an absolute http:// or https:// URL"},
		}},
		{"no host", func(e *Endpoint) { e.URL = "https:///path" }, []solstice.FieldError{
			{Pointer: "/url", Message: "must have a host (https://host/path)"},
		}},
		{"opaque", func(e *Endpoint) { e.URL = "https:example.com" }, []solstice.FieldError{
			{Pointer: "/url", Message: "must have a host (https://host/path)"},
		}},
		{"user info", func(e *Endpoint) { e.URL = "https://user:pass@example.com/" }, []solstice.FieldError{
			{Pointer: "/url", Message: "must not hold user information: the signature authenticates the deliveries"},
		}},
		{"unparsable URL", func(e *Endpoint) { e.URL = "https://exa mple.com/%zz" }, []solstice.FieldError{
			{Pointer: "/url", Message: "is not a valid URL"},
		}},
		{"long URL", func(e *Endpoint) { e.URL = "https://example.com/" + strings.Repeat("a", 2048) }, []solstice.FieldError{
			{Pointer: "/url", Message: "is longer than 2048 bytes"},
		}},
		{"bad secret", func(e *Endpoint) { e.Secret = "whsec_???" }, []solstice.FieldError{
			{Pointer: "/secret", Message: "the secret starts with whsec_ but the rest is not standard base64"},
		}},
		{"short secret", func(e *Endpoint) { e.Secret = "hunter2" }, []solstice.FieldError{
			{Pointer: "/secret", Message: "the secret is 7 bytes long; at least 24 are required"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := good
			tc.edit(&e)
			err := e.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Fatalf("Validate = %v, want a KindInvalid error", err)
			}
			if diff := cmp.Diff(tc.want, solstice.ErrorFields(err)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "pass") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "???") {
				t.Errorf("the error %q quotes the URL or the secret", err)
			}
		})
	}
}

func TestParseEndpoints(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Endpoint
	}{
		{"empty", "", nil},
		{"blank and comments", "\n  \n# no hooks yet\n", nil},
		{"one", "ops=https://hooks.example.com/solstice;secret=" + specSecret,
			[]Endpoint{{Name: "ops", URL: "https://hooks.example.com/solstice", Secret: specSecret}}},
		{"commas, newlines and spaces", " ops = https://a.example.com/x ; secret = " + specSecret + " ,\r\n# pager below\npager=http://10.0.0.2:9000/hook;secret=" + otherSecret + ";\n",
			[]Endpoint{
				{Name: "ops", URL: "https://a.example.com/x", Secret: specSecret},
				{Name: "pager", URL: "http://10.0.0.2:9000/hook", Secret: otherSecret},
			}},
		{"rotation as two options", "ops=https://a.example.com/x;secret=" + otherSecret + ";secret=" + specSecret,
			[]Endpoint{{Name: "ops", URL: "https://a.example.com/x", Secret: otherSecret + " " + specSecret}}},
		{"rotation as one option", "ops=https://a.example.com/x;secret=" + otherSecret + "  " + specSecret,
			[]Endpoint{{Name: "ops", URL: "https://a.example.com/x", Secret: otherSecret + " " + specSecret}}},
		{"URL with '=' and an encoded comma", "ops=https://a.example.com/x?team=live&tags=a%2Cb;secret=" + specSecret,
			[]Endpoint{{Name: "ops", URL: "https://a.example.com/x?team=live&tags=a%2Cb", Secret: specSecret}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEndpoints(tc.in)
			if err != nil {
				t.Fatalf("ParseEndpoints: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("endpoints (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEndpointsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []solstice.FieldError
	}{
		{"no equals", "https://a.example.com/x;secret=" + specSecret, []solstice.FieldError{
			{Pointer: "/0", Message: "must be name=URL;secret=SECRET"},
		}},
		{"no secret", "ops=https://a.example.com/x", []solstice.FieldError{
			{Pointer: "/0/secret", Message: "is required"},
		}},
		{"empty secret", "ops=https://a.example.com/x;secret=", []solstice.FieldError{
			{Pointer: "/0/secret", Message: "is required"},
		}},
		{"forgotten secret=", "ops=https://a.example.com/x;whsec_leaked0000000000000000000000", []solstice.FieldError{
			{Pointer: "/0", Message: "option 1 is unknown: the only option is secret="},
			{Pointer: "/0/secret", Message: "is required"},
		}},
		{"second entry bad", "ops=https://a.example.com/x;secret=" + specSecret + "\nPager=ftp://b/;secret=short", []solstice.FieldError{
			{Pointer: "/1/name", Message: "must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"},
			{Pointer: "/1/url", Message: "must be an absolute http:// or https:// URL"},
			{Pointer: "/1/secret", Message: "the secret is 5 bytes long; at least 24 are required"},
		}},
		{"duplicate", "ops=https://a.example.com/x;secret=" + specSecret + ",ops=https://b.example.com/y;secret=" + otherSecret, []solstice.FieldError{
			{Pointer: "/1/name", Message: `repeats the name "ops" of entry 0`},
		}},
		{"comma inside a URL", "ops=https://a.example.com/x?tags=a,b;secret=" + specSecret, []solstice.FieldError{
			{Pointer: "/0/secret", Message: "is required"},
			{Pointer: "/1", Message: "must be name=URL;secret=SECRET"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEndpoints(tc.in)
			if !solstice.IsKind(err, solstice.KindInvalid) {
				t.Fatalf("ParseEndpoints = %v, %v; want a KindInvalid error", got, err)
			}
			if got != nil {
				t.Errorf("ParseEndpoints returned %v with its error", got)
			}
			if diff := cmp.Diff(tc.want, solstice.ErrorFields(err)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "whsec_") || strings.Contains(err.Error(), "example.com") {
				t.Errorf("the error %q quotes a secret or a URL", err)
			}
		})
	}
}

func TestEndpointHidesSecrets(t *testing.T) {
	e := Endpoint{Name: "ops", URL: "https://hooks.example.com/T0KEN", Secret: specSecret}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("configured", "endpoint", e)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("configured", "endpoint", e)
	js, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(e), fmt.Sprintf("%v %+v %s %#v %q", e, e, e, e, e), logs.String(), string(js)} {
		if !strings.Contains(s, "ops") {
			t.Errorf("%q does not name the endpoint", s)
		}
		if strings.Contains(s, "T0KEN") || strings.Contains(s, "whsec_") || strings.Contains(s, "MfKQ9r8") {
			t.Errorf("%q shows the URL or the secret", s)
		}
	}
}

// FuzzParseEndpoints checks that ParseEndpoints never panics, returns only
// valid endpoints, and never quotes a secret (of 12 bytes or more: a
// shorter one may match the message by chance) in its errors.
func FuzzParseEndpoints(f *testing.F) {
	f.Add("ops=https://hooks.example.com/solstice;secret=" + specSecret)
	f.Add("a=http://h/;secret=" + specSecret + ";secret=" + otherSecret + "\n#c\n,b=https://x:1/?q=1;secret=whsec_AAAA")
	f.Add("=;=;;secret=;,\n\r=")
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ParseEndpoints(s)
		if err != nil {
			if !solstice.IsKind(err, solstice.KindInvalid) || eps != nil {
				t.Fatalf("ParseEndpoints = %v, %v", eps, err)
			}
			for _, opt := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(";,\n\r", r) }) {
				value, ok := strings.CutPrefix(strings.TrimSpace(opt), "secret=")
				for _, secret := range strings.Fields(value) {
					if ok && len(secret) >= 12 && strings.Contains(err.Error(), secret) {
						t.Fatalf("the error %q quotes the secret %q", err, secret)
					}
				}
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range eps {
			if verr := e.Validate(); verr != nil {
				t.Fatalf("ParseEndpoints returned %#v, which is invalid: %v", e, verr)
			}
			if seen[e.Name] {
				t.Fatalf("ParseEndpoints returned the name %q twice", e.Name)
			}
			seen[e.Name] = true
		}
	})
}
