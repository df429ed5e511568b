package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDashboardEdits drives the console's edit forms in headless Chromium against the real
// binaries: an operator renames an agent (a bad name shows the API's message by the field) and
// sees the new name in the fleet; rotates its key with a 1 h grace, reads the new key once, sees
// "old key valid until" while both keys are accepted, revokes the old key early and sees the line
// go and the old key refused by ingest; an admin changes a user's role (and is refused demoting
// the last admin, the 409 shown); a user changes their password through the form (a wrong current
// one is refused by the field) and logs in with the new one.
func TestDashboardEdits(t *testing.T) {
	s := newSystem(t, options{writers: 1})
	b := newBrowser(t)
	defer func() { t.Logf("screenshots in %s", b.dir) }()

	created := s.createJSON(t, "/api/v1/agents", map[string]any{"name": "edit-me", "labels": map[string]string{"env": "e2e"}})
	id, oldKey := created["id"].(string), created["api_key"].(string)
	s.createJSON(t, "/api/v1/users", map[string]any{"username": "olga", "password": "operator-password-1", "role": "operator"})
	s.createJSON(t, "/api/v1/users", map[string]any{"username": "vera", "password": "viewer-password-1", "role": "viewer"})

	// An operator edits the agent: a bad name first, then a good one with new labels.
	b.loginAs(s.gateway, "olga", "operator-password-1")
	b.eval("accepting confirmations", `String(window.confirm = () => true)`)
	b.goTo(s.gateway, "#/admin/agents")
	b.click(fmt.Sprintf(`div[data-agent="%s"] button.edit-agent`, id))
	b.fill("#edit-agent-name", "web-renamed ")
	b.expect("PATCH", "/api/v1/agents/"+id, 400)
	b.click("#save-agent")
	b.waitJS("the name field's error", `(() => { const e = document.querySelector('.edit-agent-form [data-field=name] + .field-error'); return !!e && e.textContent.includes("white space"); })()`, 10*time.Second)
	b.shots("edit-agent")
	b.fill("#edit-agent-name", "web-renamed")
	b.fill("#edit-agent-labels", "env=prod,role=web")
	b.click("#save-agent")
	b.waitJS("the form closed and the list renamed", `!document.querySelector(".edit-agent-form") && document.querySelector("main table").textContent.includes("web-renamed")`, 10*time.Second)
	b.goTo(s.gateway, "#/fleet")
	b.waitJS("the new name and labels in the fleet", fmt.Sprintf(`(() => { const r = document.querySelector('tr[data-agent="%s"]'); return !!r && r.textContent.includes("web-renamed") && r.textContent.includes("role=web") && !r.textContent.includes("env=e2e"); })()`, id), 10*time.Second)

	// Rotate with a 1 h grace: the new key is shown once, both keys work, the line shows.
	b.goTo(s.gateway, "#/admin/agents")
	b.click(fmt.Sprintf(`div[data-agent="%s"] button.rotate-key`, id))
	b.choose("#rotate-grace", "custom")
	b.fill("#rotate-custom", "45 days")
	b.expect("POST", "/api/v1/agents/"+id+"/rotate-key", 400)
	b.click("#rotate")
	b.waitJS("the grace field's error", `(() => { const e = document.querySelector('.rotate-key-form [data-field=grace] + .field-error'); return !!e && e.textContent.includes("grace"); })()`, 10*time.Second)
	b.shots("rotate-key")
	b.choose("#rotate-grace", "1h")
	b.click("#rotate")
	b.waitVisible("#new-key")
	newKey := strings.TrimSpace(b.text("#new-key"))
	if newKey == "" || newKey == oldKey {
		t.Fatalf("the rotated key shown is %q, want a new key (old %q)", newKey, oldKey)
	}
	line := fmt.Sprintf(`div[data-agent="%s"] .previous-key`, id)
	b.waitJS("the old key line", fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes("old key valid until"); })()`, line), 10*time.Second)
	b.shots("rotated-key")
	s.postCPUWithKey(t, id, newKey, 10, time.Now())
	s.postCPUWithKey(t, id, oldKey, 11, time.Now())
	// The agent page shows the line too.
	b.goTo(s.gateway, "#/agents/"+id)
	b.waitJS("the old key line on the agent page", `!!document.querySelector("main .previous-key")`, 10*time.Second)

	// Revoke the old key early: the line goes, ingest refuses the old key and takes the new one.
	b.goTo(s.gateway, "#/admin/agents")
	b.click(line + " button.revoke-previous")
	b.waitJS("the old key line gone", fmt.Sprintf(`!!document.querySelector('div[data-agent="%s"]') && !document.querySelector(%q)`, id, line), 10*time.Second)
	body := fmt.Sprintf(`{"points":[{"measurement":"cpu","fields":{"usage_percent":1},"time":%q}]}`, time.Now().UTC().Format(time.RFC3339Nano))
	if code, resp, _ := s.do("POST", "/api/v1/agents/"+id+"/metrics", "Bearer "+oldKey, []byte(body)); code != http.StatusUnauthorized {
		t.Errorf("POST metrics with the revoked old key = %d %s, want 401", code, resp)
	}
	s.postCPUWithKey(t, id, newKey, 12, time.Now())
	b.logout()

	// An admin changes a role; demoting the last admin shows the API's 409.
	b.loginAs(s.gateway, "admin", adminPassword)
	b.goTo(s.gateway, "#/users")
	b.waitVisible(`select.role-select[data-user="vera"]`)
	b.choose(`select.role-select[data-user="vera"]`, "operator")
	// The list is drawn again from the API's answer once the role is stored.
	b.waitJS("vera's new role", `(() => { const s = document.querySelector('select.role-select[data-user="vera"]'); return !!s && s.dataset.role === "operator" && !s.parentElement.querySelector(".field-error"); })()`, 10*time.Second)
	s.checkRole(t, "vera", "operator")
	b.expect("PATCH", "/api/v1/users/admin", 409)
	b.choose(`select.role-select[data-user="admin"]`, "viewer")
	b.waitJS("the last admin's 409", `(() => { const s = document.querySelector('select.role-select[data-user="admin"]'); const e = s && s.parentElement.querySelector(".field-error"); return !!e && e.textContent.includes("admin") && s.value === "admin"; })()`, 10*time.Second)
	b.shots("users-roles")
	s.checkRole(t, "admin", "admin")
	b.logout()

	// A user changes their own password from the top bar, then logs in with the new one.
	b.loginAs(s.gateway, "olga", "operator-password-1")
	b.click("#account-link")
	b.fill("#pw-old", "not-my-password")
	b.fill("#pw-new", "operator-password-2")
	b.fill("#pw-confirm", "operator-password-3")
	b.click("#change-password")
	b.waitJS("the confirmation's error", `!!document.querySelector('.password-form [data-field=confirm] + .field-error')`, 5*time.Second)
	b.fill("#pw-confirm", "operator-password-2")
	b.expect("POST", "/api/v1/auth/password", 403)
	b.click("#change-password")
	b.waitJS("the current password's error", `(() => { const e = document.querySelector('.password-form [data-field=current_password] + .field-error'); return !!e && e.textContent.includes("wrong"); })()`, 10*time.Second)
	b.shots("password-error")
	b.fill("#pw-old", "operator-password-1")
	b.fill("#pw-new", "operator-password-2")
	b.fill("#pw-confirm", "operator-password-2")
	b.click("#change-password")
	b.waitJS("the changed notice", `!!document.querySelector("#password-changed") && !document.querySelector(".password-form .field-error")`, 10*time.Second)
	b.shots("password-changed")
	b.logout()
	lb := []byte(`{"username":"olga","password":"operator-password-1"}`)
	if code, resp, _ := s.do("POST", "/api/v1/auth/login", "", lb); code != http.StatusUnauthorized {
		t.Errorf("login with the old password = %d %s, want 401", code, resp)
	}
	b.loginAs(s.gateway, "olga", "operator-password-2")
}

// choose picks value in the select sel as a user would (the change event fires).
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	b.waitVisible(sel)
	b.eval("choosing "+value+" in "+sel, fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q;
	  s.dispatchEvent(new Event("change", { bubbles: true })); return s.value; })()`, sel, value))
}

// checkRole checks through the API that username has role.
func (s *system) checkRole(t *testing.T, username, role string) {
	t.Helper()
	out, body := adminGet[struct {
		Users []struct{ Username, Role string }
	}](t, s, "/api/v1/users")
	for _, u := range out.Users {
		if u.Username == username {
			if u.Role != role {
				t.Errorf("user %s has role %s, want %s", username, u.Role, role)
			}
			return
		}
	}
	t.Errorf("no user %s in %s", username, body)
}
