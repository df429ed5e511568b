// Package metric holds the point model shared by every part of the pipeline: validation against
// limits, the strict JSON and line-protocol parsers, and the canonical line-protocol encoding that
// travels on the stream.
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
