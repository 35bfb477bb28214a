package store_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/solsticehq/solstice"
	"github.com/solsticehq/solstice/flags"
	"github.com/solsticehq/solstice/store"
)

// parallel runs f(i) for i in [0, n) in n goroutines released together,
// and returns their results.
func parallel[T any](n int, f func(i int) (T, error)) ([]T, []error) {
	results := make([]T, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func TestConcurrentWritersGetConsecutiveNumbers(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		const writers = 20
		revs, errs := parallel(writers, func(i int) ([]flags.Revision, error) {
			return db.Write(ctx, revise("production", set(fmt.Sprintf("flag-%d", i), "on", 0)))
		})
		var numbers []int64
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
			numbers = append(numbers, revs[i][0].Number)
		}
		slices.Sort(numbers)
		want := make([]int64, writers)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if diff := cmp.Diff(want, numbers); diff != "" {
			t.Errorf("revision numbers (-want +got):\n%s", diff)
		}

		// Each number is stored once, with its own change.
		stored, err := db.ListRevisions(ctx, "production", flags.RevisionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		for i, r := range stored {
			if r.Number != writers-int64(i) || len(r.Diff) != 1 || keys[r.Diff[0].Key] {
				t.Errorf("stored revision %d = %+v", i, r)
			}
			keys[r.Diff[0].Key] = true
		}
		env, err := db.GetEnvironment(ctx, "production")
		if err != nil || env.Head != writers {
			t.Errorf("head = %d, %v; want %d", env.Head, err, writers)
		}
		objects, err := db.ObjectsAt(ctx, "production", writers)
		if err != nil || len(objects) != writers {
			t.Errorf("ObjectsAt(head) has %d objects, %v; want %d", len(objects), err, writers)
		}
	})
}

func TestConcurrentWritersWithTheSameExpectation(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production")
		mustWrite(t, db, revise("production", set("a", "base", 0)))

		const writers = 8
		revs, errs := parallel(writers, func(i int) ([]flags.Revision, error) {
			return db.Write(ctx, revise("production", set("a", fmt.Sprint(i), 1)))
		})
		winner := -1
		for i, err := range errs {
			switch solstice.ErrorKind(err) {
			case "":
				if winner >= 0 {
					t.Errorf("writers %d and %d both succeeded", winner, i)
				}
				winner = i
			case solstice.KindPreconditionFailed:
			default:
				t.Errorf("writer %d: %v, want success or %s", i, err, solstice.KindPreconditionFailed)
			}
		}
		if winner < 0 {
			t.Fatal("no writer succeeded")
		}
		if revs[winner][0].Number != 2 {
			t.Errorf("winner's revision = %d, want 2", revs[winner][0].Number)
		}
		obj, err := db.GetObject(ctx, "production", flags.KindFlag, "a")
		if err != nil || string(obj.Content) != string(doc("a", fmt.Sprint(winner))) {
			t.Errorf("stored object = %s, %v; want the winner's content", obj.Content, err)
		}
	})
}

func TestConcurrentFlagUpdates(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		flag := flags.Flag{Key: "f", Name: "F", Type: flags.TypeBoolean, Version: 1, CreatedAt: t0, UpdatedAt: t0}
		mustWrite(t, db, flags.Write{CreateFlags: []flags.Flag{flag}})
		const writers = 8
		_, errs := parallel(writers, func(i int) ([]flags.Revision, error) {
			f := flag
			f.Name, f.Version = fmt.Sprint(i), 2
			return db.Write(t.Context(), flags.Write{UpdateFlags: []flags.FlagUpdate{{Flag: f, Expect: 1}}})
		})
		won := 0
		for i, err := range errs {
			switch solstice.ErrorKind(err) {
			case "":
				won++
			case solstice.KindPreconditionFailed:
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		}
		if won != 1 {
			t.Errorf("%d writers updated version 1, want exactly 1", won)
		}
	})
}

func TestNextSnapshotVersion(t *testing.T) {
	dialects(t, func(t *testing.T, db *store.DB) {
		ctx := t.Context()
		createEnv(t, db, "production", "staging")
		for want := int64(1); want <= 3; want++ {
			if got, err := db.NextSnapshotVersion(ctx, "production"); err != nil || got != want {
				t.Fatalf("NextSnapshotVersion = %d, %v; want %d", got, err, want)
			}
		}
		if got, err := db.NextSnapshotVersion(ctx, "staging"); err != nil || got != 1 {
			t.Errorf("first staging version = %d, %v; want 1 (counters are per environment)", got, err)
		}

		const callers, calls = 10, 10
		versions, errs := parallel(callers, func(int) ([]int64, error) {
			var got []int64
			for range calls {
				v, err := db.NextSnapshotVersion(ctx, "production")
				if err != nil {
					return got, err
				}
				got = append(got, v)
			}
			return got, nil
		})
		var all []int64
		for i, err := range errs {
			if err != nil {
				t.Fatalf("caller %d: %v", i, err)
			}
			if !slices.IsSorted(versions[i]) || len(slices.Compact(slices.Clone(versions[i]))) != calls {
				t.Errorf("caller %d saw versions %v, want strictly increasing", i, versions[i])
			}
			all = append(all, versions[i]...)
		}
		slices.Sort(all)
		for i, v := range all {
			if want := int64(4 + i); v != want {
				t.Fatalf("versions handed out = %v, want each of 4..%d once", all, 3+callers*calls)
			}
		}

		_, err := db.NextSnapshotVersion(ctx, "qa")
		wantKind(t, err, solstice.KindNotFound)
	})
}
