// Package metric holds the point model shared by every part of the pipeline: validation against
// limits, the strict JSON and line-protocol parsers, and the canonical line-protocol encoding that
// travels on the stream.
//
// Both parsers apply the same rules to every point, so that whatever they accept can be written
// as line protocol, is read back the same way by InfluxDB and by DecodeLineProtocol, and is
// stored by InfluxDB rather than refused after the gateway answered 204:
//   - a measurement and at least one field; no more than Limits.MaxTags tags and
//     Limits.MaxFields fields; no duplicate tag keys or field keys;
//   - measurement, tag keys, tag values and field keys are not empty (InfluxDB's client would
//     silently drop an empty tag), fit Limits.MaxNameLen (Limits.MaxTagValueLen for tag
//     values), are valid UTF-8 and hold no ASCII control character (no newline);
//   - no backslash at the end of a name or tag value, nor before ',', '=', '"' or a space:
//     InfluxDB and the line-protocol library read such backslashes differently;
//   - names starting with "_" are InfluxDB's; "time" is neither a tag key nor a field key; a
//     measurement cannot start with "#", which line protocol reads as a comment;
//   - the measurement is not one the pipeline writes itself ("alerts", see
//     IsReservedMeasurement);
//   - no field is named like a reserved tag ("agent", see IsReservedTag): InfluxQL resolves a
//     name to a field before a tag, so such a field would let one agent's points answer
//     WHERE agent='<another agent>';
//   - floats are finite; strings are valid UTF-8, fit Limits.MaxStringLen and hold no '\n',
//     '\r' or '\t' (the encoder would write them as escapes that InfluxDB stores literally);
//   - no unsigned integer fields (suffix u): InfluxDB 1.x, as released, refuses the whole write;
//   - measurement, tags and each field key fit InfluxDB's 65535-byte series key, with room
//     left for the agent tag;
//   - the time fits int64 nanoseconds and lies within [now-Limits.MaxPast, now+Limits.MaxFuture].
//
// A client may send a tag named "agent": it is accepted here and replaced by AppendLineProtocol
// with the id of the agent the gateway authenticated, so the stored value never comes from the
// body. Accepted points have their tags and fields sorted by key.
//
// What a single request cannot show, the type a field already has in InfluxDB, is checked
// after parsing by the field-type registry (package fieldtype).
package metric
