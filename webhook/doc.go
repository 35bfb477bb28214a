// Package webhook delivers signed webhooks: Solstice announces guardrail
// incidents (a trip, a hold, a fail-safe, a release, a resume) to HTTP
// endpoints its operator configured.
//
// Delivery follows the Standard Webhooks specification
// (https://www.standardwebhooks.com, the scheme of Svix): each request
// carries the headers webhook-id, webhook-timestamp and webhook-signature,
// the signature being "v1," and the base64 HMAC-SHA256 of
// "<id>.<timestamp>.<body>" under the endpoint's secret. Receivers check it
// with Verify, or with any Standard Webhooks library.
//
// Messages are queued in an Outbox in the same transaction as the change
// they announce (the transactional outbox), so a committed incident is
// never left unannounced and a rolled-back one is never announced. A
// Dispatcher claims the due messages, POSTs them, and records each
// outcome: delivered, retried later with exponential backoff and jitter, or
// given up. Delivery is at least once: a receiver drops duplicates by
// webhook-id, which stays the same across retries.
//
// docs/webhooks.md describes the configuration, the payloads, the retry
// schedule and how to verify a delivery in Go, Python or shell.
package webhook
