package stream

import (
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/vmihailenco/msgpack"
)

// decoder turns entries' fields into Watermill messages. It reads exactly what Watermill's
// redisstream.DefaultMarshallerUnmarshaller.Unmarshal reads, with the same msgpack library and the
// same steps for the metadata (a map of strings, nil allowed), but it is built for a batch: one
// msgpack.Decoder and one bytes.Reader serve every entry, where Watermill's Unmarshal builds both
// per entry and decodes the map through reflection, and the messages of a batch share one
// allocation. That was about half of what the consumer spent per entry (the workers' CPU is taken
// from the gateway on a one-machine deployment). A decoder is not safe for concurrent use.
//
// The messages are not built with message.NewMessage: they have no ack channels, since the
// consumer, not Watermill, acks entries (Message.Msg's Ack and Nack must not be called).
type decoder struct {
	r   strings.Reader
	mp  *msgpack.Decoder
	buf []message.Message
}

func newDecoder() *decoder {
	d := &decoder{}
	d.mp = msgpack.NewDecoder(&d.r)
	return d
}

// decode decodes values into a message. Values that are not strings, which go-redis never
// returns, are an error, like a missing UUID field or metadata that is not a msgpack map of
// strings.
func (d *decoder) decode(values map[string]any) (*message.Message, error) {
	uuid, ok := values[FieldUUID].(string)
	if !ok {
		if values[FieldUUID] == nil {
			return nil, fmt.Errorf("%s key is missing as part of the message", FieldUUID)
		}
		return nil, fmt.Errorf("unmarshalling: field %s is a %T, not a string", FieldUUID, values[FieldUUID])
	}
	var payload, meta string
	if v := values[FieldPayload]; v != nil {
		if payload, ok = v.(string); !ok {
			return nil, fmt.Errorf("unmarshalling: field %s is a %T, not a string", FieldPayload, v)
		}
	}
	if v := values[FieldMetadata]; v != nil {
		if meta, ok = v.(string); !ok {
			return nil, fmt.Errorf("unmarshalling: field %s is a %T, not a string", FieldMetadata, v)
		}
	}
	md := message.Metadata{}
	if meta != "" {
		var err error
		if md, err = d.metadata(meta); err != nil {
			return nil, fmt.Errorf("unmarshal metadata fail: %w", err)
		}
	}
	if len(d.buf) == 0 {
		d.buf = make([]message.Message, 64)
	}
	msg := &d.buf[0]
	d.buf = d.buf[1:]
	msg.UUID = uuid
	msg.Metadata = md
	// A copy: the payload is handed to handlers that may decode it in place.
	msg.Payload = []byte(payload)
	return msg, nil
}

// metadata decodes msgpack-encoded metadata as msgpack.Unmarshal into a map[string]string does:
// nil decodes to a nil map, a later duplicate key wins.
func (d *decoder) metadata(s string) (message.Metadata, error) {
	d.r.Reset(s)
	if err := d.mp.Reset(&d.r); err != nil {
		return nil, err
	}
	n, err := d.mp.DecodeMapLen()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, nil
	}
	md := make(message.Metadata, min(n, 16)) // n comes from the entry: do not trust it for a size
	for range n {
		k, err := d.mp.DecodeString()
		if err != nil {
			return nil, err
		}
		v, err := d.mp.DecodeString()
		if err != nil {
			return nil, err
		}
		md[k] = v
	}
	return md, nil
}
