-- The client address of each audited change (issue 10): the TCP peer, or the address a trusted
-- reverse proxy names (TRUSTED_PROXIES); empty for changes the system makes on its own.

-- +goose Up
ALTER TABLE audit_log ADD COLUMN client_addr text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE audit_log DROP COLUMN client_addr;
