// Package fieldtype keeps the registry of field types: the type (float, integer, string,
// boolean) each field of each measurement has in InfluxDB, so that the gateway refuses, with a
// 400 naming the field and its type, a point that InfluxDB would refuse after the agent was told
// its data is stored.
//
// InfluxDB fixes a field's type at its first write to a shard and refuses any other type there
// with a partial-write error. Measurements are shared by every agent, so without this registry
// one agent writing disk.free as a string would make every other agent's float disk.free vanish
// into dead letters. The registry is stricter than InfluxDB in one way: it fixes the type per
// measurement for good, not per shard, which is what makes every shard agree.
//
// Where the types live:
//   - Redis holds the truth shared by every gateway copy: one hash per measurement,
//     <prefix>fieldtypes:<measurement>, field key → InfluxDB's type name ("float", "integer",
//     "string", "boolean"). A new field is claimed with HSETNX, so of two copies that see
//     the first writes of one field with different types at the same time, exactly one type
//     wins and the other request is refused. The hashes never expire: to let a field change
//     type after dropping it from InfluxDB, delete the hash field (HDEL) and restart the
//     gateways (their caches keep the old type).
//   - Each process caches what it has seen: a field already known costs a map lookup and no
//     Redis round trip; the new fields of a request cost one pipelined round trip together.
//   - At start the registry is seeded from InfluxDB (SeedUntilDone: SHOW FIELD KEYS), retried
//     in the background while InfluxDB is down; meanwhile it works from Redis and learns. A
//     field InfluxDB holds with several types (in different shards) is registered with the
//     first type InfluxDB lists: refusing a valid point with a 400 is visible and fixable, a
//     point acknowledged and then refused is lost.
//
// JSON numbers: JSON has one number type, so a JSON number is a float unless the field is
// already registered as an integer and the number is integral (and fits int64), in which case
// it is written as an integer. A fractional number for an integer field is refused. Integers
// beyond 2^53 lose precision in JSON (as in JavaScript): send them as line protocol (123i).
// Line protocol types are taken as written: 3 is a float, 3i an integer.
//
// A tag key that equals a field the registry knows for the measurement is refused too: InfluxQL
// would read WHERE key='x' as the field. This check uses the process's cache only (no round
// trip), so it catches the fields this gateway copy has seen or seeded.
package fieldtype
