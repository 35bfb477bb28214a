package snapshot

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxSignatures bounds the signatures of one envelope. Opening an envelope
// costs up to one Ed25519 verification per signature and trusted key; two
// keys overlap during a rotation, so a handful is plenty.
const MaxSignatures = 8

// Envelope is a decoded DSSE v1 envelope. Its content is unverified; only
// Open turns it into something to act on.
type Envelope struct {
	PayloadType string
	Payload     []byte // decoded from base64
	Signatures  []Signature
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string // hex SHA-256 of the raw public key; only a hint
	Sig   []byte // decoded from base64
}

// PAE returns the DSSE v1 pre-authentication encoding of a payload, the
// bytes that are signed:
//
//	"DSSEv1" SP len(payloadType) SP payloadType SP len(payload) SP payload
//
// with the lengths as ASCII decimal byte counts.
func PAE(payloadType string, payload []byte) []byte {
	b := make([]byte, 0, len("DSSEv1")+len(payloadType)+len(payload)+24)
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	b = append(b, ' ')
	return append(b, payload...)
}

type envelopeJSON struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []signatureJSON `json:"signatures"`
}

type signatureJSON struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// marshal encodes e as compact JSON with the fields in the order of the
// design notes.
func (e *Envelope) marshal() ([]byte, error) {
	j := envelopeJSON{
		PayloadType: e.PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(e.Payload),
		Signatures:  make([]signatureJSON, len(e.Signatures)),
	}
	for i, s := range e.Signatures {
		j.Signatures[i] = signatureJSON{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&j); err != nil {
		return nil, fmt.Errorf("marshal snapshot envelope: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeEnvelope decodes an envelope strictly: exactly the DSSE fields, each
// once and spelled exactly (encoding/json alone would match keys
// case-insensitively and let the last duplicate win), canonical standard
// base64, at least one and at most MaxSignatures signatures, nothing after
// the closing brace. Strictness does not add security (only the signed bytes
// are trusted) but it means that the envelope a client accepted is the one
// every other parser sees, and that a damaged envelope fails loudly.
func decodeEnvelope(b []byte) (*Envelope, *VerifyError) {
	d := &strictDecoder{dec: json.NewDecoder(bytes.NewReader(b))}
	var e Envelope
	var sawType, sawPayload, sawSigs bool
	d.object(func(key string) {
		switch key {
		case "payloadType":
			sawType = true
			e.PayloadType = d.string(key)
		case "payload":
			sawPayload = true
			e.Payload = d.base64(key)
		case "signatures":
			sawSigs = true
			d.array(key, func() {
				if len(e.Signatures) == MaxSignatures {
					d.fail(fmt.Errorf("more than %d signatures", MaxSignatures))
					return
				}
				e.Signatures = append(e.Signatures, d.signature())
			})
		default:
			d.fail(fmt.Errorf("unknown field %q", key))
		}
	})
	d.end()
	switch {
	case d.err != nil:
	case !sawType:
		d.err = errors.New(`missing "payloadType"`)
	case !sawPayload:
		d.err = errors.New(`missing "payload"`)
	case !sawSigs || len(e.Signatures) == 0:
		d.err = errors.New("no signatures")
	}
	if d.err != nil {
		return nil, malformed(d.err, "snapshot envelope does not decode")
	}
	return &e, nil
}

func (d *strictDecoder) signature() Signature {
	var s Signature
	var sawSig bool
	d.object(func(key string) {
		switch key {
		case "keyid":
			s.KeyID = d.string(key)
		case "sig":
			sawSig = true
			s.Sig = d.base64(key)
		default:
			d.fail(fmt.Errorf("unknown signature field %q", key))
		}
	})
	if d.err == nil && !sawSig {
		d.fail(errors.New(`signature without "sig"`))
	}
	return s
}

// strictDecoder walks JSON tokens, keeping the first error; after an error
// every method is a no-op.
type strictDecoder struct {
	dec *json.Decoder
	err error
}

func (d *strictDecoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *strictDecoder) token() json.Token {
	if d.err != nil {
		return nil
	}
	t, err := d.dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	d.fail(err)
	return t
}

func (d *strictDecoder) delim(want json.Delim, what string) {
	if t := d.token(); d.err == nil && t != want {
		d.fail(fmt.Errorf("%s: want %q, got %v", what, rune(want), t))
	}
}

// object reads an object, calling field for each key with the decoder
// positioned at its value. Duplicate keys are an error.
func (d *strictDecoder) object(field func(key string)) {
	d.delim('{', "object")
	seen := make(map[string]bool, 3)
	for d.err == nil && d.dec.More() {
		t := d.token()
		key, ok := t.(string)
		if d.err != nil || !ok {
			d.fail(errors.New("want an object key"))
			return
		}
		if seen[key] {
			d.fail(fmt.Errorf("duplicate field %q", key))
			return
		}
		seen[key] = true
		field(key)
	}
	d.delim('}', "end of object")
}

func (d *strictDecoder) array(what string, elem func()) {
	d.delim('[', what)
	for d.err == nil && d.dec.More() {
		elem()
	}
	d.delim(']', what)
}

func (d *strictDecoder) string(what string) string {
	t := d.token()
	s, ok := t.(string)
	if d.err == nil && !ok {
		d.fail(fmt.Errorf("%s: want a string, got %v", what, t))
	}
	return s
}

// base64 decodes canonical standard base64: padded, no line breaks (which
// the decoder would otherwise skip), no non-zero padding bits.
func (d *strictDecoder) base64(what string) []byte {
	s := d.string(what)
	if d.err != nil {
		return nil
	}
	if strings.ContainsAny(s, "\r\n") {
		d.fail(fmt.Errorf("%s: line break in base64", what))
		return nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		d.fail(fmt.Errorf("%s: %w", what, err))
		return nil
	}
	return b
}

// end requires that nothing but whitespace follows the envelope.
func (d *strictDecoder) end() {
	if d.err != nil {
		return
	}
	if _, err := d.dec.Token(); err != io.EOF {
		d.fail(errors.New("data after the envelope"))
	}
}

// DecodeUnverified decodes an envelope and its payload WITHOUT checking any
// signature, expiry or version. It is for showing what a rejected snapshot
// claims (`solstice snapshot inspect`); never act on its result.
//
// It returns a *VerifyError with ReasonMalformed if the envelope does not
// decode; if the envelope decodes but its payload does not, it returns the
// envelope, a nil payload and a *VerifyError with ReasonMalformed or
// ReasonSchema.
func DecodeUnverified(envelope []byte) (*Envelope, *Payload, error) {
	e, verr := decodeEnvelope(envelope)
	if verr != nil {
		return nil, nil, verr
	}
	p, verr := parsePayload(e.Payload)
	if verr != nil {
		return e, nil, verr
	}
	return e, p, nil
}
