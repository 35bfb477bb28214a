// Package guardrails decides, from cumulative telemetry counters, when a
// flag's treatment has made things measurably worse, and acts on it: roll
// the flag back, pause its rollout, or notify.
//
// The statistics are always-valid sequential tests (mixture sequential
// probability ratio tests and e-values), so a decision stays valid however
// often the job looks at the data: every tick if need be. A flag's
// guardrails share one false-rollback budget α (Bonferroni). Telemetry that
// cannot be trusted (a sample-ratio mismatch between the arms, a metric
// that stopped arriving while exposures continue, late or inconsistent
// counters) holds the rollout and alerts instead of deciding; a hold that
// outlasts its timeout fails safe. A trip latches: only a person resumes a
// tripped guardrail, and a resume starts a new test on new data.
//
// Evaluate is the pure decision over counters; Step and Resume are the pure
// state machine (see Transition for its table); Job applies them on a
// schedule over small interfaces (CounterSource, StateStore, Actions) that
// the adapters implement. docs/guardrails.md explains the method and the
// simulation that checks it; guardrails/sim is that simulation.
package guardrails
