package metric

// Point is one validated measurement: a measurement name, a tag set sorted by key, at least one
// field sorted by key, and a timestamp in Unix nanoseconds. The gateway always stamps Time before a
// point leaves it, so a redelivered point overwrites itself in InfluxDB.
type Point struct {
	Measurement string
	Tags        []Tag
	Fields      []Field
	Time        int64
}

// Tag is one tag key and value.
type Tag struct {
	Key, Value string
}

// Field is one field key and its typed value.
type Field struct {
	Key   string
	Value Value
}

// Kind is the type of a field value.
type Kind uint8

// The kinds a field value can have; they are the line-protocol types.
const (
	KindFloat Kind = iota + 1
	KindInt
	KindUint
	KindString
	KindBool
)

// Value is a typed field value. Only the member that matches Kind is meaningful.
type Value struct {
	Kind Kind
	F    float64
	I    int64
	U    uint64
	S    string
	B    bool
}

// Name returns the address of a field everywhere outside the stream: "measurement.field".
func Name(measurement, field string) string { return measurement + "." + field }

// Tag returns the value of the tag key and whether p has it. Points decoded from the stream
// carry the tag "agent" with the id of the agent that sent them.
func (p *Point) Tag(key string) (string, bool) {
	for _, t := range p.Tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

// AsFloat returns a numeric value (float, integer or unsigned) as a float64, and false for
// strings and booleans.
func (v Value) AsFloat() (float64, bool) {
	switch v.Kind {
	case KindFloat:
		return v.F, true
	case KindInt:
		return float64(v.I), true
	case KindUint:
		return float64(v.U), true
	}
	return 0, false
}
