package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// smtpServer is an SMTP server for one test (emersion/go-smtp): STARTTLS with a generated
// certificate, AUTH PLAIN required (and refused before TLS), messages kept.
type smtpServer struct {
	addr  string
	roots *x509.CertPool
	mu    sync.Mutex
	got   []mailReceived
}

type mailReceived struct {
	from string
	to   []string
	tls  bool
	data []byte
}

const smtpUser, smtpPassword = "notifier", "p4ss-word"

func newSMTPServer(t *testing.T) *smtpServer {
	t.Helper()
	cert, _, _ := testenv.SelfSignedCert(t, 1, "smtp test")
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)

	s := &smtpServer{roots: roots}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{srv: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.AllowInsecureAuth = false // AUTH only after STARTTLS
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *smtpServer) messages() []mailReceived {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mailReceived(nil), s.got...)
}

type smtpSession struct {
	srv    *smtpServer
	conn   *smtp.Conn
	authed bool
	msg    mailReceived
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != smtpUser || pass != smtpPassword {
			return errors.New("invalid credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.authed {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.msg = mailReceived{from: from, tls: isTLS}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.msg.to = append(s.msg.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.data = b
	s.srv.mu.Lock()
	s.srv.got = append(s.srv.got, s.msg)
	s.srv.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

func TestEmailReceived(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := newSMTPServer(t)
	ch := e.createChannel(alert.Channel{
		Name: "mail", Type: alert.ChannelTypeEmail, To: []string{"ops@example.com", "oncall@example.org"}, Enabled: true,
	})
	fire, _ := e.fireAndResolve(ch.ID)
	cfg := e.config("n1")
	cfg.ExternalURL = "https://monitor.example.com"
	cfg.SMTPAddr, cfg.SMTPFrom, cfg.SMTPStartTLS = srv.addr, "alerts@example.com", true
	cfg.SMTPUsername, cfg.SMTPPassword = smtpUser, smtpPassword
	e.start(cfg, func(n *Notifier) { n.smtpTLS = &tls.Config{RootCAs: srv.roots, MinVersion: tls.VersionTLS12} })
	waitFor(t, 10*time.Second, "2 e-mails", func() bool { return len(srv.messages()) >= 2 })
	e.settled()

	msgs := srv.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d e-mails, want 2", len(msgs))
	}
	tests := []struct {
		subject string
		want    []string
	}{
		{"[FIRING:CRITICAL] CPU busy on agent-1", []string{"CPU busy: agent-1 at 97.5%", "Value:          97.5", "team:           infra",
			"Rule:           https://monitor.example.com/api/v1/alert-rules/" + fire.RuleID}},
		{"[RESOLVED] CPU busy on agent-1", []string{"Recovery value: 41.25", "Fired for:      1m30s", "Value:          41.25"}},
	}
	for i, tt := range tests {
		m := msgs[i]
		if !m.tls || m.from != "alerts@example.com" || strings.Join(m.to, ",") != "ops@example.com,oncall@example.org" {
			t.Errorf("e-mail %d envelope = from %q to %q tls %v, want from alerts@example.com to both, over TLS", i, m.from, m.to, m.tls)
		}
		parsed, err := mail.ReadMessage(strings.NewReader(string(m.data)))
		if err != nil {
			t.Fatalf("e-mail %d does not parse: %v\n%s", i, err, m.data)
		}
		subject, _ := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject"))
		if subject != tt.subject {
			t.Errorf("e-mail %d subject = %q, want %q", i, subject, tt.subject)
		}
		if got := parsed.Header.Get("To"); got != "ops@example.com, oncall@example.org" {
			t.Errorf("e-mail %d To = %q", i, got)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(parsed.Body))
		if err != nil {
			t.Fatalf("e-mail %d body: %v", i, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("e-mail %d body lacks %q:\n%s", i, w, body)
			}
		}
	}
}
