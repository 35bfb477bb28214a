// Package rollout moves flags through time: staged rollout plans that ramp
// a treatment variant up through cohorts with a control group of the same
// size, gated by guardrails, sample size and a person's approval; seasonal
// events whose phases change several flags at set local times and set them
// back when the event ends; a time-travel preview of the configuration in
// force at any future moment; a calendar; and the Scheduler that applies
// every scheduled change exactly once, even with several control-plane
// processes on one database.
//
// The package holds the vocabulary and the pure decisions (Transition and
// its table, StepConfig, Decide, Timeline.At, DetectConflicts, BuildCalendar)
// and the runner around them (Scheduler, Service). It imports neither Echo
// nor gorm: it declares the small interfaces it needs (Store for plans,
// events and the records of scheduled changes; Flags, the flags service every
// change goes through; Guardrails, the guardrail states that gate a ramp)
// and package store, package flags and package guardrails implement them.
//
// docs/rollouts.md explains the model, the state table, the bucketing of
// ramps with control groups, the scheduler's guarantees and conflicts.
package rollout
