package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs commands against one data directory.
type cli struct {
	t    *testing.T
	data string
}

func newCLI(t *testing.T) *cli { return &cli{t: t, data: t.TempDir()} }

// run runs one command line and returns its exit code, stdout and stderr.
func (c *cli) run(stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string {
		switch k {
		case "SOLSTICE_DATA":
			return c.data
		case "SOLSTICE_LOG_FORMAT":
			return "text"
		case "USER":
			return "tester"
		}
		return ""
	}}
	code := run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("solstice %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage: solstice <command>"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"tokens"}, 2, "missing subcommand"},
		{[]string{"tokens", "create"}, 2, "--name is required"},
		{[]string{"tokens", "create", "--name", "x", "--server"}, 2, "--server needs --env"},
		{[]string{"tokens", "create", "--name", "x", "--env", "staging"}, 2, "only for server keys"},
		{[]string{"tokens", "create", "--name", "x", "--bogus"}, 2, "-bogus"},
		{[]string{"tokens", "create", "--name", "x", "--role", "owner"}, 1, "/role"},
		{[]string{"tokens", "create", "--name", "x", "--server", "--env", "nowhere"}, 1, `"nowhere" not found`},
		{[]string{"tokens", "revoke", "tok_nope"}, 1, "not found"},
		{[]string{"eval", "--env", "staging"}, 2, "--flag is required"},
		{[]string{"eval", "--env", "staging", "--flag", "x", "--context", "[1]"}, 2, "not a JSON object"},
		{[]string{"apply", "--env", "staging"}, 2, "-f FILE is required"},
		{[]string{"apply", "--env", "staging", "-f", "/does/not/exist.yaml"}, 1, "no such file"},
		{[]string{"export"}, 2, "--env is required"},
		{[]string{"export", "--env", "nowhere"}, 1, "not found"},
		{[]string{"serve", "--log-level", "loud"}, 2, "invalid log level"},
		{[]string{"serve", "--seed", "maybe"}, 2, "invalid -seed"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := c.run("", tc.args...)
			if code != tc.code {
				t.Errorf("exit = %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
			if !strings.Contains(out+errs, tc.msg) {
				t.Errorf("output does not mention %q:\nstdout: %s\nstderr: %s", tc.msg, out, errs)
			}
		})
	}
}

func TestTokensLifecycle(t *testing.T) {
	c := newCLI(t)
	out := c.ok("tokens", "create", "--name", "ci", "--role", "editor")
	secret := regexp.MustCompile(`sol_admin_[a-z0-9]+`).FindString(out)
	id := regexp.MustCompile(`tok_[0-9a-f]+`).FindString(out)
	if secret == "" || id == "" {
		t.Fatalf("create printed no secret or id:\n%s", out)
	}
	srv := c.ok("tokens", "create", "--name", "gs", "--server", "--env", "production", "--json")
	var created struct {
		Secret string
		Token  struct{ Environment, Kind string }
	}
	if err := json.Unmarshal([]byte(srv), &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Secret, "sol_server_") || created.Token.Environment != "production" {
		t.Errorf("server key = %+v", created)
	}
	list := c.ok("tokens", "list")
	if !strings.Contains(list, id) || !strings.Contains(list, "editor") || strings.Contains(list, secret) {
		t.Errorf("list:\n%s", list)
	}
	c.ok("tokens", "revoke", id)
	if list := c.ok("tokens", "list"); !strings.Contains(list, "revoked") {
		t.Errorf("list after revoke:\n%s", list)
	}
	if code, _, errs := c.run("", "tokens", "revoke", id); code != 1 || !strings.Contains(errs, "already revoked") {
		t.Errorf("second revoke: exit %d, %s", code, errs)
	}
}

func TestFlagsAsCode(t *testing.T) {
	c := newCLI(t)
	c.ok("migrate")
	if out := c.ok("migrate"); !strings.Contains(out, "up to date") {
		t.Errorf("second migrate: %s", out)
	}
	file := filepath.Join(t.TempDir(), "staging.yaml")
	doc := `environment: staging
flags:
  - key: winter-festival
    name: Winter Festival
    type: object
    schema:
      type: object
      required: [xp]
      properties:
        xp: {type: number, maximum: 5}
    enabled: true
    variants:
      - {key: control, value: {xp: 1}}
      - {key: festival, value: {xp: 2}}
    default_variant: control
    off_variant: control
    split:
      bucket_by: userId
      weights: [{variant: festival, weight: 5000}, {variant: control, weight: 5000}]
`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out := c.ok("apply", "-f", file, "--dry-run")
	if !strings.Contains(out, "+ flag definition winter-festival") || !strings.Contains(out, "Dry run") {
		t.Errorf("dry run output:\n%s", out)
	}
	if code, _, errs := c.run("", "eval", "--env", "staging", "--flag", "winter-festival"); code != 0 || !strings.Contains(c.ok("eval", "--env", "staging", "--flag", "winter-festival"), "FLAG_NOT_FOUND") {
		t.Errorf("flag exists after a dry run: exit %d %s", code, errs)
	}
	out = c.ok("apply", "-f", file, "-m", "winter config")
	if !strings.Contains(out, "Applied as revision") {
		t.Errorf("apply output:\n%s", out)
	}
	if out := c.ok("apply", "-f", file); !strings.Contains(out, "nothing to change") {
		t.Errorf("re-apply output:\n%s", out)
	}

	// An invalid value is refused with its pointer and changes nothing.
	bad := strings.Replace(doc, "{xp: 2}", "{xp: 9}", 1)
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := c.run("", "apply", "-f", file)
	if code != 1 || !strings.Contains(errs, "/flags/0/variants/1/value/xp") {
		t.Errorf("invalid apply: exit %d\n%s", code, errs)
	}
	// Unknown fields are refused too.
	if code, _, errs := c.run("environment: staging\nflags: []\ncolour: red\n", "apply", "-f", "-"); code != 1 || !strings.Contains(errs, "colour") {
		t.Errorf("unknown field: exit %d\n%s", code, errs)
	}

	exported := c.ok("export", "--env", "staging", "--format", "json")
	var got struct {
		Environment string
		Flags       []struct{ Key string }
	}
	if err := json.Unmarshal([]byte(exported), &got); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, exported)
	}
	if got.Environment != "staging" || len(got.Flags) != 1 || got.Flags[0].Key != "winter-festival" {
		t.Errorf("export = %+v", got)
	}

	// Evaluation against the database and against the exported file agree.
	expFile := filepath.Join(t.TempDir(), "exp.json")
	if err := os.WriteFile(expFile, []byte(exported), 0o644); err != nil {
		t.Fatal(err)
	}
	ctxJSON := `{"targetingKey":"p","userId":"player-42"}`
	fromDB := c.ok("eval", "--env", "staging", "--flag", "winter-festival", "--context", ctxJSON, "--json")
	fromFile := c.ok("eval", "--file", expFile, "--flag", "winter-festival", "--context", ctxJSON, "--json")
	if fromDB != fromFile {
		t.Errorf("eval differs:\ndatabase: %s\nfile: %s", fromDB, fromFile)
	}
	if !strings.Contains(fromDB, `"reason": "SPLIT"`) {
		t.Errorf("eval: %s", fromDB)
	}
}

func TestServeSeedsAndShutsDown(t *testing.T) {
	c := newCLI(t)
	token := regexp.MustCompile(`sol_admin_[a-z0-9]+`).FindString(c.ok("tokens", "create", "--name", "look", "--role", "viewer"))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
		if k == "SOLSTICE_DATA" {
			return c.data
		}
		return ""
	}}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, e) }()

	re := regexp.MustCompile(`running at http://(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(errb.String()); m != nil {
			addr = m[1]
			break
		}
	}
	if addr == "" {
		cancel()
		t.Fatalf("server did not start:\n%s", errb.String())
	}
	res, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("/readyz = %d", res.StatusCode)
	}
	if !strings.Contains(errb.String(), "seeded the demo project") || !strings.Contains(errb.String(), `"level":"INFO"`) {
		t.Errorf("log lacks the seed message or is not JSON:\n%s", errb.String())
	}
	// The seeded guardrail has seeded telemetry to show: both arms counted,
	// and healthy.
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/environments/development/flags/winter-festival/guardrails/reject-rate", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		type arm struct{ N, Exposures int64 }
		var g struct {
			Verdict struct {
				Status   string
				Evidence struct{ Treatment, Control arm }
			}
			State struct{ Phase string }
		}
		err := json.NewDecoder(res.Body).Decode(&g)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Errorf("seeded guardrail: status %d, %v", res.StatusCode, err)
		}
		for name, a := range map[string]arm{"festival": g.Verdict.Evidence.Treatment, "control": g.Verdict.Evidence.Control} {
			if a.N < 10_000 || a.Exposures < 300 {
				t.Errorf("seeded %s arm has %d actions and %d exposures, want three hours of telemetry", name, a.N, a.Exposures)
			}
		}
		if g.Verdict.Status != "healthy" {
			t.Errorf("the seeded guardrail's verdict is %q, want healthy", g.Verdict.Status)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d:\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after its context ended")
	}
	// The seeded project is there, and a restart does not seed again.
	if out := c.ok("eval", "--env", "development", "--flag", "double-xp", "--context", `{"platform":"ios","clientVersion":"2.5.1"}`); !strings.Contains(out, "TARGETING_MATCH") {
		t.Errorf("seeded double-xp: %s", out)
	}
	if out := c.ok("export", "--env", "development", "--format", "json"); strings.Count(out, `"key": "winter-festival"`) != 1 {
		t.Errorf("export after seed:\n%.500s", out)
	}
}

func TestSimGuardrails(t *testing.T) {
	c := newCLI(t)
	if code, _, errs := c.run("", "sim"); code != 2 || !strings.Contains(errs, "sim guardrails") {
		t.Errorf("sim without a subject: exit %d, %s", code, errs)
	}
	out := c.ok("sim", "guardrails", "--quick", "--seed", "3")
	if !strings.Contains(out, "seed 3, quick mode") || !strings.Contains(out, "naive z-test") {
		t.Errorf("report:\n%.600s", out)
	}
	if again := c.ok("sim", "guardrails", "--quick", "--seed", "3", "--workers", "1"); again != out {
		t.Error("the same seed gave a different report")
	}
}
