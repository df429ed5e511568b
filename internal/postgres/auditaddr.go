package postgres

import "context"

// clientAddrKey carries the client address of a change in its context.
type clientAddrKey struct{}

// WithClientAddr returns ctx carrying addr, the address of the client making the changes done
// with it: every audit row written with the context records it (AuditEntry.ClientAddr).
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, addr)
}

// clientAddr returns the address WithClientAddr put in ctx, or "".
func clientAddr(ctx context.Context) string {
	addr, _ := ctx.Value(clientAddrKey{}).(string)
	return addr
}
