package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestCheckURL runs every spelling of an inside address an attacker would try through the
// create-time check of the default policy, and the public addresses that must stay allowed.
func TestCheckURL(t *testing.T) {
	p, err := NewPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := checkURLFunc(t, p)
	// Loopback, every spelling.
	f("http://127.0.0.1/", "127.0.0.1 is a loopback address")
	f("http://127.0.0.1:8080/hook", "loopback")
	f("http://127.255.255.254/", "loopback")
	f("http://2130706433/", "non-standard spelling of the IPv4 address 127.0.0.1")
	f("http://0x7f000001/", "127.0.0.1")
	f("http://0X7F000001/", "127.0.0.1")
	f("http://0177.0.0.1/", "127.0.0.1")
	f("http://0x7f.0.0.1/", "127.0.0.1")
	f("http://127.1/", "127.0.0.1")
	f("http://127.0.1/", "127.0.0.1")
	f("http://017700000001/", "127.0.0.1")
	f("http://127.0.0.1./", "trailing dot")
	f("http://[::1]/", "::1 is a loopback address")
	f("http://[0:0:0:0:0:0:0:1]/", "loopback")
	f("http://[::ffff:127.0.0.1]/", "127.0.0.1 is a loopback address")
	f("http://[::ffff:7f00:1]/", "loopback")
	f("http://localhost/", `host "localhost" resolves to 127.0.0.1`)
	f("http://LOCALHOST.:9000/", "loopback")
	f("http://api.localhost/", "loopback")
	// Unspecified: the local host on Linux.
	f("http://0.0.0.0/", "unspecified")
	f("http://0/", "non-standard spelling of the IPv4 address 0.0.0.0")
	f("http://[::]/", "unspecified")
	// Private, shared, link-local, metadata.
	f("http://10.1.2.3/", "private")
	f("http://172.16.0.1/", "private")
	f("http://172.31.255.255/", "private")
	f("http://192.168.1.1/", "private")
	f("http://[fc00::1]/", "private")
	f("http://[fd12:3456::1]/", "private")
	f("http://[fd00:ec2::254]/", "private") // AWS metadata over IPv6
	f("http://100.64.0.1/", "CGNAT")
	f("http://100.127.255.254/", "CGNAT")
	f("http://100.100.100.200/", "CGNAT") // Alibaba metadata
	f("http://169.254.169.254/latest/meta-data/", "link-local (cloud metadata)")
	f("http://2852039166/", "169.254.169.254")
	f("http://[::ffff:169.254.169.254]/", "link-local")
	f("http://[fe80::1]/", "link-local")
	f("http://[fe80::1%25eth0]/", "link-local")
	// Multicast, broadcast, reserved.
	f("http://224.0.0.1/", "multicast")
	f("http://239.255.255.250/", "multicast")
	f("http://[ff02::1]/", "multicast")
	f("http://255.255.255.255/", "broadcast")
	f("http://240.0.0.1/", "reserved")
	f("http://0.1.2.3/", "reserved")
	f("http://[64:ff9b::7f00:1]/", "reserved") // NAT64 of 127.0.0.1
	f("http://[2002:7f00:1::]/", "reserved")   // 6to4 of 127.0.0.1
	f("http://1.2.3.4.5/", "not an IPv4 address")
	f("http://256.1.1.1/", "not an IPv4 address")
	// Public addresses and names stay allowed.
	f("https://8.8.8.8/", "")
	f("https://1.1.1.1:8443/hook", "")
	f("http://100.63.255.255/", "")
	f("http://100.128.0.0/", "")
	f("http://172.32.0.1/", "")
	f("http://192.169.0.1/", "")
	f("http://[2606:4700:4700::1111]/", "")
	f("https://hooks.slack.com/services/T0/B0/x", "")
	f("https://name-that-does-not-resolve.invalid/", "") // checked again at connect time
	f("https://1e100.net/", "")
}

func TestBlockedErrorsMatchErrBlocked(t *testing.T) {
	p, _ := NewPolicy(nil)
	err := p.CheckURL(context.Background(), "http://[::ffff:10.0.0.1]/")
	var be *BlockedError
	if !errors.Is(err, ErrBlocked) || !errors.As(err, &be) || be.Addr != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("CheckURL(mapped 10.0.0.1) = %#v, want a *BlockedError for 10.0.0.1 matching ErrBlocked", err)
	}
	if !strings.Contains(err.Error(), AllowSetting) {
		t.Errorf("error %q does not say how to allow the address", err)
	}
	if err := p.CheckAddr(netip.MustParseAddr("0.0.0.0")); strings.Contains(err.Error(), AllowSetting) {
		t.Errorf("CheckAddr(0.0.0.0) = %q, want no hint: no allow-list opens it", err)
	}
}

func TestAllowList(t *testing.T) {
	p, err := NewPolicy([]string{" 10.20.0.0/16", "192.168.1.20", "::ffff:127.0.0.0/104", "alerts.internal", "*.corp.example", "", "0.0.0.0/0"})
	if err != nil {
		t.Fatalf("NewPolicy = %v", err)
	}
	f := checkURLFunc(t, p)
	f("http://10.20.3.4/", "")
	f("http://192.168.1.20/", "")
	f("http://127.0.0.1/", "")          // from the mapped CIDR
	f("http://[::ffff:127.0.0.2]/", "") // mapped spelling of an allowed address
	f("http://alerts.internal/", "")
	f("http://ALERTS.internal./", "")
	f("http://hooks.corp.example/", "")
	f("http://10.21.0.1/", "")          // 0.0.0.0/0 opens every unicast address...
	f("http://0.0.0.0/", "unspecified") // ...but never these
	f("http://224.0.0.1/", "multicast")
	f("http://2130706433/", "non-standard spelling") // spellings stay refused

	strict, _ := NewPolicy([]string{"10.20.0.0/16"})
	if err := strict.CheckURL(context.Background(), "http://10.21.0.1/"); !errors.Is(err, ErrBlocked) {
		t.Errorf("CheckURL(10.21.0.1) with 10.20.0.0/16 allowed = %v, want blocked", err)
	}
	if err := strict.CheckURL(context.Background(), "http://corp.example/"); err != nil {
		t.Errorf("CheckURL(corp.example) = %v, want nil (a name that does not resolve)", err)
	}

	for _, bad := range []string{"10.0.0.0/33", "not a host!", "1.2.3.4.5", "127.1", "-x.example"} {
		if _, err := NewPolicy([]string{bad}); err == nil || !strings.Contains(err.Error(), AllowSetting) {
			t.Errorf("NewPolicy(%q) = %v, want an error naming %s", bad, err, AllowSetting)
		}
	}
}

// TestDialRefusesLoopback connects through the policy's dialer: a loopback server is refused
// by default however it is named (the check is on the address dialled), and reached once
// allow-listed, by network or by name.
func TestDialRefusesLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	get := func(p *Policy, host string) error {
		tr := &http.Transport{DialContext: p.DialContext(&net.Dialer{Timeout: 2 * time.Second})}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + net.JoinHostPort(host, port) + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	deny, _ := NewPolicy(nil)
	for _, host := range []string{"127.0.0.1", "localhost", "::ffff:127.0.0.1"} {
		err := get(deny, host)
		if !errors.Is(err, ErrBlocked) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("GET via %s with the default policy = %v, want refused as loopback", host, err)
		}
	}
	byNet, _ := NewPolicy([]string{"127.0.0.0/8"})
	if err := get(byNet, "127.0.0.1"); err != nil {
		t.Errorf("GET 127.0.0.1 with 127.0.0.0/8 allowed = %v, want nil", err)
	}
	byName, _ := NewPolicy([]string{"localhost"})
	if err := get(byName, "localhost"); err != nil {
		t.Errorf("GET localhost with localhost allowed = %v, want nil", err)
	}
	if err := get(byName, "127.0.0.1"); !errors.Is(err, ErrBlocked) {
		t.Errorf("GET 127.0.0.1 with only the name localhost allowed = %v, want refused", err)
	}
}

func TestCheckHostSpelling(t *testing.T) {
	for host, ok := range map[string]bool{
		"127.0.0.1": true, "::1": true, "example.com": true, "a1.example": true, "1.example": true,
		"2130706433": false, "0x7f000001": false, "127.1": false, "0177.0.0.1": false, "1.2.3.4.": false,
		"example.123": false, "example.0x1": false,
	} {
		if err := CheckHostSpelling(host); (err == nil) != ok {
			t.Errorf("CheckHostSpelling(%q) = %v, want ok=%v", host, err, ok)
		}
	}
}

// checkURLFunc returns an f-test of p.CheckURL: f(url, "") wants url allowed, f(url, want) an
// error containing want.
func checkURLFunc(t *testing.T, p *Policy) func(url, want string) {
	return func(url, want string) {
		t.Helper()
		err := p.CheckURL(context.Background(), url)
		switch {
		case want == "" && err != nil:
			t.Errorf("CheckURL(%q) = %v, want nil", url, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("CheckURL(%q) = %v, want an error containing %q", url, err, want)
		}
	}
}
