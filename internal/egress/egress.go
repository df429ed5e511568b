// Package egress decides which network addresses the product may connect to on a user's behalf
// (webhook deliveries): never loopback, private, link-local, shared (CGNAT), reserved or
// cloud-metadata addresses, unless an operator allow-lists them, and never unspecified,
// multicast or broadcast ones. It checks a URL when it is configured (CheckURL) and, again, every
// address actually dialled (DialContext), so that a name re-pointed after the check (DNS
// rebinding) still cannot reach inside.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBlocked is matched (errors.Is) by every error that refuses an address or host.
var ErrBlocked = errors.New("address not allowed")

// BlockedError refuses one address: Addr is what was (or would be) connected to, Range the
// reserved range it falls in, Kind a word for that range ("loopback", "private", ...). Host,
// when set, is the name that resolved to Addr.
type BlockedError struct {
	Host  string
	Addr  netip.Addr
	Kind  string
	Range netip.Prefix
	// Always is true for addresses no allow-list can open (unspecified, multicast, broadcast).
	Always bool
}

// Error names the address, and the host that resolved to it, and how to allow it when it can be.
func (e *BlockedError) Error() string {
	msg := fmt.Sprintf("%s is a %s address (%s): refused", e.Addr, e.Kind, e.Range)
	if e.Host != "" {
		msg = fmt.Sprintf("host %q resolves to %s, a %s address (%s): refused", e.Host, e.Addr, e.Kind, e.Range)
	}
	if !e.Always {
		msg += "; an operator can allow it with " + AllowSetting
	}
	return msg
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// AllowSetting is the name of the operators' allow-list setting, used in error messages.
const AllowSetting = "WEBHOOK_ALLOWED_NETWORKS"

type reserved struct {
	prefix netip.Prefix
	kind   string
	always bool
}

// reservedRanges are refused unless allow-listed (or always). IPv4-mapped IPv6 addresses are
// unmapped before the check, so ::ffff:127.0.0.1 is loopback; other IPv6 forms that embed an
// IPv4 address (NAT64, 6to4, Teredo) are refused as a whole.
var reservedRanges = func() []reserved {
	var out []reserved
	add := func(kind string, always bool, prefixes ...string) {
		for _, p := range prefixes {
			out = append(out, reserved{netip.MustParsePrefix(p), kind, always})
		}
	}
	add("unspecified", true, "0.0.0.0/32", "::/128")
	add("multicast", true, "224.0.0.0/4", "ff00::/8")
	add("broadcast", true, "255.255.255.255/32")
	add("loopback", false, "127.0.0.0/8", "::1/128")
	add("link-local (cloud metadata)", false, "169.254.0.0/16", "fe80::/10")
	add("private", false, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
	add("shared (CGNAT)", false, "100.64.0.0/10")
	add("reserved", false,
		"0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "240.0.0.0/4",
		"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
		"2002::/16", "fec0::/10")
	return out
}()

// Policy is the set of addresses the product may connect to. The zero value is not usable:
// build one with NewPolicy. A Policy is safe for concurrent use.
type Policy struct {
	nets     []netip.Prefix
	hosts    []string // exact names, lower case, no trailing dot
	suffixes []string // from "*.example.com": ".example.com"
	resolver *net.Resolver
}

// NewPolicy returns the default policy opened by allowed: each entry a CIDR (10.0.0.0/8,
// fd00::/8), a single address (192.168.1.20), a host name (alertmanager.internal) or a domain
// wildcard (*.corp.example). Empty entries are ignored. An allowed host name is trusted
// whatever it resolves to; an allowed network opens the addresses in it, by whatever name they
// are reached. Unspecified, multicast and broadcast addresses stay refused.
func NewPolicy(allowed []string) (*Policy, error) {
	p := &Policy{resolver: net.DefaultResolver}
	for _, raw := range allowed {
		s := strings.TrimSpace(raw)
		switch {
		case s == "":
			continue
		case strings.Contains(s, "/"):
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR: %w", AllowSetting, s, err)
			}
			p.nets = append(p.nets, unmapPrefix(pfx.Masked()))
		default:
			if a, err := netip.ParseAddr(s); err == nil {
				a = a.Unmap()
				p.nets = append(p.nets, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			name := strings.TrimSuffix(strings.ToLower(s), ".")
			wildcard := strings.HasPrefix(name, "*.")
			name = strings.TrimPrefix(name, "*.")
			if !validHostName(name) {
				return nil, fmt.Errorf("%s: %q is neither a CIDR, an IP address nor a host name", AllowSetting, s)
			}
			if wildcard {
				p.suffixes = append(p.suffixes, "."+name)
			} else {
				p.hosts = append(p.hosts, name)
			}
		}
	}
	return p, nil
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// validHostName accepts LDH labels separated by dots; a name whose last label is numeric is an
// IPv4 spelling, not a name.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return !numericLabel(labels[len(labels)-1])
}

// numericLabel reports whether a host's label is a number (decimal, or hex after 0x): the
// WHATWG URL standard then parses the host as an IPv4 address, not as a name.
func numericLabel(l string) bool {
	digits := "0123456789"
	if len(l) >= 2 && (l[:2] == "0x" || l[:2] == "0X") {
		l, digits = l[2:], "0123456789abcdefABCDEF"
		if l == "" {
			return true
		}
	}
	return l != "" && strings.Trim(l, digits) == ""
}

// AllowsHost reports whether host (a name, not an address) is allow-listed by name.
func (p *Policy) AllowsHost(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, a := range p.hosts {
		if h == a {
			return true
		}
	}
	for _, s := range p.suffixes {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// CheckAddr returns a *BlockedError when a may not be connected to, nil when it may.
func (p *Policy) CheckAddr(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	for _, r := range reservedRanges {
		if !r.prefix.Contains(a) {
			continue
		}
		if !r.always && p.allowsAddr(a) {
			return nil
		}
		return &BlockedError{Addr: a, Kind: r.kind, Range: r.prefix, Always: r.always}
	}
	return nil
}

func (p *Policy) allowsAddr(a netip.Addr) bool {
	for _, n := range p.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// CheckHostSpelling refuses a URL host that spells an IPv4 address in a form other than
// dotted decimal (2130706433, 0x7f000001, 0177.0.0.1, 127.1): resolvers disagree on what such
// a host means, so it is never accepted, allow-listed or not. It is a syntax check: it needs no
// Policy and no network. The error names the address the spelling stands for.
func CheckHostSpelling(host string) error {
	h := strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(h); err == nil {
		if h != host {
			return fmt.Errorf("host %q: write the address without a trailing dot", host)
		}
		return nil
	}
	labels := strings.Split(h, ".")
	if !numericLabel(labels[len(labels)-1]) {
		return nil // a name
	}
	a, ok := parseIPv4Loose(h)
	if !ok {
		return fmt.Errorf("host %q ends in a number but is not an IPv4 address", host)
	}
	return fmt.Errorf("host %q is a non-standard spelling of the IPv4 address %s: write it in dotted-decimal form", host, a)
}

// parseIPv4Loose parses s the way inet_aton (and the WHATWG URL standard) does: one to four
// dot-separated parts, each decimal, 0x-hex or 0-octal, the last filling the remaining bytes.
func parseIPv4Loose(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 || s == "" {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, err := parseIPv4Part(part)
		if err != nil {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

func parseIPv4Part(s string) (uint64, error) {
	base := 10
	switch {
	case len(s) > 1 && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")):
		s, base = s[2:], 16
		if s == "" {
			return 0, nil // "0x" is 0 to inet_aton
		}
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" || strings.ContainsAny(s, "+-_") {
		return 0, errors.New("not a number")
	}
	return strconv.ParseUint(s, base, 32)
}

// CheckURL checks a webhook URL when it is configured: its host spelling, then a literal
// address against the policy, then, unless the host is allow-listed by name, every address the
// name resolves to now ("localhost" and names under ".localhost" count as loopback). A name
// that does not resolve is accepted: it is checked again at every connection. The error matches
// ErrBlocked when an address is refused.
func (p *Policy) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parsing URL: %w", errors.Unwrap(err))
	}
	host := u.Hostname()
	if err := CheckHostSpelling(host); err != nil {
		return err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(a)
	}
	if p.AllowsHost(host) {
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		if err := p.CheckAddr(netip.MustParseAddr("127.0.0.1")); err != nil {
			var be *BlockedError
			if errors.As(err, &be) {
				be.Host = host
			}
			return err
		}
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(lctx, "ip", host)
	if err != nil {
		return nil // checked again when connecting
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			var be *BlockedError
			if errors.As(err, &be) {
				be.Host = host
			}
			return err
		}
	}
	return nil
}

// DialContext returns a dial function for http.Transport.DialContext that connects with d and
// checks, in the dialer's Control hook, the address of every connection attempt: after name
// resolution, so a name that resolves to a refused address fails however it got there. Hosts
// allow-listed by name are dialled without the check.
func (p *Policy) DialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	checked := *d
	checked.Control = p.control
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && p.AllowsHost(host) {
			return d.DialContext(ctx, network, addr)
		}
		return checked.DialContext(ctx, network, addr)
	}
}

// control is a net.Dialer Control hook: address is the literal ip:port about to be connected.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check address %q: %w", ErrBlocked, address, err)
	}
	return p.CheckAddr(ap.Addr())
}
