package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/accounts"
	"github.com/solsticehq/solstice/review"
	"github.com/solsticehq/solstice/web"
)

// The people of the web UI: `solstice users` manages their accounts from
// the command line (the first administrator above all), and uiDeps wires
// the UI into `solstice serve`.

// newAccounts returns the accounts service over the app's database; role
// changes check the environments they name.
func newAccounts(a *app, opts ...accounts.Option) *accounts.Service {
	opts = append([]accounts.Option{
		accounts.WithLogger(a.log),
		accounts.WithEnvironmentCheck(func(ctx context.Context, env string) error {
			_, err := a.flags.Store().GetEnvironment(ctx, env)
			return err
		}),
	}, opts...)
	return accounts.NewService(a.db, opts...)
}

// uiDeps returns what the web UI needs, and makes sure someone can log in
// to it: with no user at all, it creates the administrator "admin" and
// prints its one-time password on e.stdout. Options set the session
// timeouts (accounts.WithIdleTimeout, accounts.WithAbsoluteTimeout).
func uiDeps(ctx context.Context, e *env, a *app, secureCookies bool, opts ...accounts.Option) (*web.UIDeps, error) {
	acc := newAccounts(a, opts...)
	if err := ensureFirstAdmin(solstice.WithActor(ctx, solstice.System("first-start")), e.stdout, acc); err != nil {
		return nil, fmt.Errorf("create the first administrator: %w", err)
	}
	return &web.UIDeps{Accounts: acc, Review: review.NewService(a.db, a.flags, acc), SecureCookies: secureCookies}, nil
}

// ensureFirstAdmin creates the first administrator when there are no users
// and prints its one-time password to w. It does nothing otherwise.
func ensureFirstAdmin(ctx context.Context, w io.Writer, acc *accounts.Service) error {
	name, pw, err := acc.EnsureAdmin(ctx)
	if err != nil || name == "" {
		return err
	}
	fmt.Fprintf(w, "\nNo users yet: created the administrator %q for the web UI.\n"+
		"Its one-time password, shown only now (you choose your own at the first login):\n\n    %s\n\n"+
		"More users: ./bin/solstice users create --name NAME --role editor\n\n", name, pw)
	return nil
}

// envRoles is a repeatable --env-role ENV=ROLE flag.
type envRoles map[string]accounts.Role

func (r envRoles) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r)) {
		parts = append(parts, k+"="+string(r[k]))
	}
	return strings.Join(parts, ",")
}

func (r envRoles) Set(v string) error {
	env, role, ok := strings.Cut(v, "=")
	if !ok || env == "" || role == "" {
		return fmt.Errorf("want ENV=ROLE, got %q", v)
	}
	r[env] = accounts.Role(role)
	return nil
}

// roleFlags registers --role and --env-role and returns the role map they
// give (nil when neither is set and def is empty).
func roleFlags(fs *flag.FlagSet, def string) func() map[string]accounts.Role {
	role := fs.String("role", def, "role in every environment: viewer, editor, approver or admin")
	perEnv := envRoles{}
	fs.Var(perEnv, "env-role", "role in one environment, ENV=ROLE (repeatable); overrides --role there")
	return func() map[string]accounts.Role {
		if *role == "" && len(perEnv) == 0 {
			return nil
		}
		roles := maps.Clone(map[string]accounts.Role(perEnv))
		roles[accounts.AllEnvironments] = accounts.Role(*role)
		return roles
	}
}

// readPassword reads one line from r: a password given on standard input.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read the password from standard input: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// password returns the password of a create or set-password: read from
// standard input, or a generated one-time password.
func password(e *env, fromStdin bool) (pw string, oneTime bool, err error) {
	if fromStdin {
		pw, err = readPassword(e.stdin)
		return pw, false, err
	}
	pw, err = accounts.GeneratePassword()
	return pw, true, err
}

func cmdUsers(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("missing subcommand: create, list, set-password, set-roles, disable or enable")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet(e, "users "+sub)
	conf := bindConfig(fs, e, dbSettings...)
	switch sub {
	case "create":
		name := fs.String("name", "", "username (required): a-z, 0-9, '.', '_', '-'")
		display := fs.String("display-name", "", "name shown in the UI")
		roles := roleFlags(fs, string(accounts.RoleViewer))
		stdin := fs.Bool("password-stdin", false, "read the password from standard input instead of generating a one-time password")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *name == "" {
			return usagef("--name is required")
		}
		pw, oneTime, err := password(e, *stdin)
		if err != nil {
			return err
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			u, err := newAccounts(a).CreateUser(ctx, accounts.NewUser{Username: *name, DisplayName: *display, Password: pw,
				Roles: roles(), MustChangePassword: oneTime})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Created %s (%s).\n", u.Username, describeRoles(u))
			if oneTime {
				fmt.Fprintf(e.stdout, "One-time password, shown only now (%s chooses a new one at the first login):\n\n    %s\n\n", u.Username, pw)
			}
			return nil
		})
	case "list":
		asJSON := fs.Bool("json", false, "print JSON")
		if err := parse(fs, args); err != nil {
			return err
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			users, err := newAccounts(a).ListUsers(ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(e.stdout, map[string]any{"users": users})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USERNAME\tNAME\tROLES\tLAST LOGIN\tSTATUS")
			for _, u := range users {
				status := "active"
				switch {
				case u.Disabled:
					status = "disabled"
				case u.MustChangePassword:
					status = "one-time password"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Username, u.DisplayName, describeRoles(u), ago(u.LastLoginAt), status)
			}
			return tw.Flush()
		})
	case "set-password":
		stdin := fs.Bool("password-stdin", false, "read the new password from standard input instead of generating a one-time password")
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("usage: solstice users set-password NAME [--password-stdin]")
		}
		pw, oneTime, err := password(e, *stdin)
		if err != nil {
			return err
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			if err := newAccounts(a).SetPassword(ctx, pos[0], pw, oneTime); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Set the password of %s and logged out its sessions.\n", accounts.NormalizeUsername(pos[0]))
			if oneTime {
				fmt.Fprintf(e.stdout, "One-time password, shown only now:\n\n    %s\n\n", pw)
			}
			return nil
		})
	case "set-roles":
		roles := roleFlags(fs, "")
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("usage: solstice users set-roles NAME --role ROLE [--env-role ENV=ROLE]...")
		}
		r := roles()
		if r == nil || r[accounts.AllEnvironments] == "" {
			return usagef("--role is required: the role in every environment (each --env-role overrides it in one)")
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			u, err := newAccounts(a).SetRoles(ctx, pos[0], r)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s: %s.\n", u.Username, describeRoles(u))
			return nil
		})
	case "disable", "enable":
		pos, err := parseArgs(fs, args, 1)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("usage: solstice users %s NAME", sub)
		}
		return withApp(ctx, e, conf, func(ctx context.Context, a *app) error {
			u, err := newAccounts(a).SetDisabled(ctx, pos[0], sub == "disable")
			if err != nil {
				return err
			}
			if u.Disabled {
				fmt.Fprintf(e.stdout, "Disabled %s and logged out its sessions.\n", u.Username)
			} else {
				fmt.Fprintf(e.stdout, "Enabled %s.\n", u.Username)
			}
			return nil
		})
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(e.stdout, "usage: solstice users create|list|set-password|set-roles|disable|enable\n\nRun `solstice users create -h` for a subcommand's flags.\n")
		return flag.ErrHelp
	default:
		return usagef("unknown subcommand %q: want create, list, set-password, set-roles, disable or enable", sub)
	}
}

// describeRoles says a user's roles in a few words.
func describeRoles(u accounts.User) string {
	s := string(u.Role(accounts.AllEnvironments)) + " everywhere"
	for _, env := range u.EnvironmentRoles() {
		s += fmt.Sprintf(", %s in %s", u.Roles[env], env)
	}
	return s
}
