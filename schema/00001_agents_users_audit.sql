-- Agents, operators and the audit log (issue 2).

-- +goose Up

-- An agent is a host, service or Telegraf instance that pushes metrics with its API key.
-- name is unique: operators find agents by name, and a second registration of the same host by
-- mistake would otherwise leave two live keys behind two indistinguishable rows.
CREATE TABLE agents (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text        NOT NULL
                             CONSTRAINT agents_name_key UNIQUE
                             CONSTRAINT agents_name_check CHECK (name <> '' AND name = btrim(name) AND char_length(name) <= 200 AND name !~ '[[:cntrl:]]'),
    labels       jsonb       NOT NULL DEFAULT '{}'
                             CONSTRAINT agents_labels_check CHECK (jsonb_typeof(labels) = 'object'),
    -- Lowercase hex SHA-256 of the key. Keys are high-entropy random, so a fast hash is right (and
    -- lets ingest look a key up by its hash); operator passwords use bcrypt instead.
    api_key_hash text        NOT NULL
                             CONSTRAINT agents_api_key_hash_key UNIQUE
                             CONSTRAINT agents_api_key_hash_check CHECK (api_key_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- When the gateway last accepted a batch from the agent; NULL until the first one.
    last_seen    timestamptz
);

-- An operator of the dashboards and the API. Usernames are lowercase so that "Admin" and "admin"
-- cannot be two people.
CREATE TABLE users (
    username      text        PRIMARY KEY
                              CONSTRAINT users_username_check CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    password_hash text        NOT NULL CONSTRAINT users_password_hash_check CHECK (password_hash <> ''),
    role          text        NOT NULL CONSTRAINT users_role_check CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Who changed what, when: one row per change to agents or users, written in the change's own
-- transaction. Rows older than LOGS_RETENTION_DAYS are purged.
CREATE TABLE audit_log (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL CONSTRAINT audit_log_actor_check CHECK (actor <> ''),
    action  text        NOT NULL CONSTRAINT audit_log_action_check CHECK (action <> ''),
    target  text        NOT NULL DEFAULT '',
    details jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_at_idx ON audit_log (at);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE users;
DROP TABLE agents;
