package webhook

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
)

// maxURLLength bounds an endpoint's URL.
const maxURLLength = 2048

// Endpoint is a receiver of webhooks.
//
// Its URL and its Secret are both secrets (many services put a token in
// the URL's path): String, GoString, LogValue and encoding/json show
// neither, and the Dispatcher never logs them.
type Endpoint struct {
	// Name identifies the endpoint in messages (Message.Endpoint), logs
	// and settings: a key, 1 to 128 of a-z, 0-9, '.', '_', '-', starting
	// with a letter or digit.
	Name string `json:"name"`
	// URL is the absolute http or https URL deliveries are POSTed to.
	URL string `json:"-"`
	// Secret signs the deliveries: "whsec_" and the base64 of the key (the
	// Standard Webhooks form), or a raw secret whose bytes are the key,
	// each at least 24 bytes once decoded. During a rotation it holds the
	// new and the old secret separated by a space, and every delivery
	// carries a signature under each.
	Secret string `json:"-"`
}

// String returns the endpoint's name, hiding its URL and secret.
func (e Endpoint) String() string { return "webhook endpoint " + strconv.Quote(e.Name) }

// GoString implements fmt.GoStringer without the URL and the secret.
func (e Endpoint) GoString() string {
	return fmt.Sprintf("webhook.Endpoint{Name: %q, URL: <hidden>, Secret: <hidden>}", e.Name)
}

// LogValue implements slog.LogValuer: the name only.
func (e Endpoint) LogValue() slog.Value { return slog.StringValue(e.Name) }

// Validate checks the endpoint: a name that is a key (see flags.ValidKey);
// an absolute http or https URL with a host, without user information (put
// no credentials in it: the signature authenticates Solstice), of at most
// 2048 bytes; and a secret that decodes (see Endpoint.Secret).
//
// It returns nil or a KindInvalid *solstice.Error with a field error per
// problem ("/name", "/url", "/secret"). Its messages never quote the URL or
// the secret.
func (e Endpoint) Validate() error {
	if fields := e.problems(""); len(fields) > 0 {
		return solstice.Invalid(fmt.Sprintf("invalid webhook endpoint %q", e.Name), fields...)
	}
	return nil
}

// problems returns the field errors of e, their pointers under prefix.
func (e Endpoint) problems(prefix string) []solstice.FieldError {
	var fields []solstice.FieldError
	add := func(field, msg string) {
		fields = append(fields, solstice.FieldError{Pointer: prefix + "/" + field, Message: msg})
	}
	switch {
	case e.Name == "":
		add("name", "is required")
	case !flags.ValidKey(e.Name):
		add("name", "must be 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
	}
	if msg := checkURL(e.URL); msg != "" {
		add("url", msg)
	}
	if strings.TrimSpace(e.Secret) == "" {
		add("secret", "is required")
	} else if _, err := parseSecrets(e.Secret); err != nil {
		add("secret", err.Error())
	}
	return fields
}

// checkURL says what is wrong with raw as an endpoint URL, or "".
func checkURL(raw string) string {
	if raw == "" {
		return "is required"
	}
	if len(raw) > maxURLLength {
		return "is longer than " + strconv.Itoa(maxURLLength) + " bytes"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a valid URL" // url's error quotes the URL, which may hold a token
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http:// or https:// URL"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "must have a host (https://host/path)"
	case u.User != nil:
		return "must not hold user information: the signature authenticates the deliveries"
	}
	return ""
}

// ParseEndpoints parses endpoints from settings text (the SOLSTICE_WEBHOOKS
// variable). Entries are separated by commas or newlines; each is the
// endpoint's name, '=', its URL, then ';'-separated options, of which there
// is one, secret=<secret>, required, and repeatable during a rotation:
//
//	ops=https://hooks.example.com/solstice;secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
//	pager=https://pager.example.net/in;secret=whsec_new...;secret=whsec_old...
//
// Spaces around entries and parts are ignored, as are empty entries and
// entries starting with '#'. Because ',' and ';' separate entries and
// options, a URL holding them must percent-encode them (%2C, %3B). Empty
// text gives no endpoints.
//
// It returns the endpoints in order, each valid (see Endpoint.Validate), or
// a KindInvalid *solstice.Error with a field error per problem, pointing
// into the list of entries ("/0/url", "/2/secret"), of which it names the
// first; duplicate names and unknown options are errors too. Its messages
// never quote URLs or secrets.
func ParseEndpoints(s string) ([]Endpoint, error) {
	var (
		eps    []Endpoint
		fields []solstice.FieldError
		first  = map[string]int{} // name → index of its first entry
	)
	for _, entry := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		entry = strings.TrimSpace(entry)
		if entry == "" || strings.HasPrefix(entry, "#") {
			continue
		}
		i := len(eps)
		prefix := "/" + strconv.Itoa(i)
		add := func(field, msg string) {
			fields = append(fields, solstice.FieldError{Pointer: prefix + field, Message: msg})
		}
		parts := strings.Split(entry, ";")
		name, rawURL, ok := strings.Cut(parts[0], "=")
		if !ok {
			add("", "must be name=URL;secret=SECRET")
		}
		ep := Endpoint{Name: strings.TrimSpace(name), URL: strings.TrimSpace(rawURL)}
		var secrets []string
		for n, opt := range parts[1:] {
			key, value, _ := strings.Cut(strings.TrimSpace(opt), "=")
			switch strings.TrimSpace(key) {
			case "secret":
				secrets = append(secrets, strings.Fields(value)...)
			case "":
				// an empty option, as in a trailing ';'
			default:
				// Not quoted: it may be a secret whose "secret=" was forgotten.
				add("", fmt.Sprintf("option %d is unknown: the only option is secret=", n+1))
			}
		}
		ep.Secret = strings.Join(secrets, " ")
		if ok {
			fields = append(fields, ep.problems(prefix)...)
		}
		if j, dup := first[ep.Name]; dup && ep.Name != "" {
			add("/name", fmt.Sprintf("repeats the name %q of entry %d", ep.Name, j))
		} else if !dup {
			first[ep.Name] = i
		}
		eps = append(eps, ep)
	}
	if len(fields) > 0 {
		return nil, solstice.Invalid(fmt.Sprintf("invalid webhook endpoints: %d problem(s)", len(fields)), fields...)
	}
	return eps, nil
}
