package stream

import (
	"maps"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/vmihailenco/msgpack"
)

// wireValues returns the fields Watermill's marshaller writes for msg, as go-redis reads them back
// (every value a string).
func wireValues(t testing.TB, msg *message.Message) map[string]any {
	t.Helper()
	vals, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal("topic", msg)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		switch v := v.(type) {
		case string:
			out[k] = v
		case []byte:
			out[k] = string(v)
		case message.Payload:
			out[k] = string(v)
		default:
			t.Fatalf("field %s is a %T", k, v)
		}
	}
	return out
}

func mustMsgpack(t *testing.T, v any) string {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDecoderAgreesWithWatermill: the consumer's decoder reads what Watermill's own unmarshaller
// reads, and refuses what it refuses.
func TestDecoderAgreesWithWatermill(t *testing.T) {
	full := message.NewMessage("u-1", []byte("cpu,agent=a a=1 1\n"))
	full.Metadata = message.Metadata{MetaAgent: "a", MetaReceivedAt: "17", MetaPoints: "1"}
	noMeta := message.NewMessage("u-2", []byte("x"))
	noMeta.Metadata = nil
	tests := map[string]map[string]any{
		"published":         wireValues(t, full),
		"nil metadata":      wireValues(t, noMeta),
		"empty payload":     {FieldUUID: "u", FieldPayload: "", FieldMetadata: mustMsgpack(t, map[string]string{"k": "v"})},
		"no payload":        {FieldUUID: "u"},
		"empty metadata":    {FieldUUID: "u", FieldPayload: "p", FieldMetadata: ""},
		"no uuid":           {FieldPayload: "p"},
		"garbled metadata":  {FieldUUID: "u", FieldPayload: "p", FieldMetadata: "\xc1\x00"},
		"truncated map":     {FieldUUID: "u", FieldPayload: "p", FieldMetadata: mustMsgpack(t, map[string]string{"k": "v"})[:3]},
		"int metadata":      {FieldUUID: "u", FieldPayload: "p", FieldMetadata: mustMsgpack(t, map[string]int{"k": 1})},
		"metadata not map":  {FieldUUID: "u", FieldPayload: "p", FieldMetadata: mustMsgpack(t, []string{"k"})},
		"int uuid":          {FieldUUID: 7, FieldPayload: "p"},
		"bytes payload":     {FieldUUID: "u", FieldPayload: []byte("p")},
		"huge map length":   {FieldUUID: "u", FieldPayload: "p", FieldMetadata: "\xdf\xff\xff\xff\xff"},
		"nil map":           {FieldUUID: "u", FieldPayload: "p", FieldMetadata: "\xc0"},
		"duplicate key":     {FieldUUID: "u", FieldPayload: "p", FieldMetadata: "\x82\xa1k\xa1a\xa1k\xa1b"},
		"bin string values": {FieldUUID: "u", FieldPayload: "p", FieldMetadata: "\x81\xc4\x01k\xc4\x01v"},
	}
	dec := newDecoder()
	for name, values := range tests {
		t.Run(name, func(t *testing.T) {
			want, wantErr := watermillDecode(values)
			got, err := decode(dec, values)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("decode error %v, Watermill's %v", err, wantErr)
			}
			if err != nil {
				return
			}
			if got.UUID != want.UUID || string(got.Payload) != string(want.Payload) ||
				!maps.Equal(got.Metadata, want.Metadata) || (got.Metadata == nil) != (want.Metadata == nil) {
				t.Errorf("decoded %q %q %v, Watermill %q %q %v", got.UUID, got.Payload, got.Metadata, want.UUID, want.Payload, want.Metadata)
			}
		})
	}
}

// watermillDecode is Watermill's unmarshaller with its panics (type assertions) made errors.
func watermillDecode(values map[string]any) (msg *message.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, errPanic
		}
	}()
	return redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(values)
}

var errPanic = &decodePanic{}

type decodePanic struct{}

func (*decodePanic) Error() string { return "panic" }

// TestDecodedPayloadIsACopy: handlers may decode payloads in place; the entry's string must not
// change (it is also what a dead letter copies).
func TestDecodedPayloadIsACopy(t *testing.T) {
	values := map[string]any{FieldUUID: "u", FieldPayload: "abc"}
	msg, err := decode(newDecoder(), values)
	if err != nil {
		t.Fatal(err)
	}
	msg.Payload[0] = 'x'
	if values[FieldPayload] != "abc" {
		t.Errorf("payload field is %q after the message's payload changed", values[FieldPayload])
	}
}

// BenchmarkDecode is the consumer's decoding of one typical metrics entry, against Watermill's
// own unmarshaller.
func BenchmarkDecode(b *testing.B) {
	msg := message.NewMessage("0b4bd0e4-3f5d-4f8b-a3e2-7c9f1f5a8e11", benchPayload)
	msg.Metadata = message.Metadata{MetaAgent: "5f0f3b2c-9d8a-4d1e-8f6b-2a7c1e9d4b30",
		MetaReceivedAt: "1764093600000000000", MetaPoints: "6"}
	values := wireValues(b, msg)
	b.Run("consumer", func(b *testing.B) {
		dec := newDecoder()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decode(dec, values); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("watermill", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := watermillDecode(values); err != nil {
				b.Fatal(err)
			}
		}
	})
}
