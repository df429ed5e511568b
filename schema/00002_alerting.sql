-- Alerting: rules, notification channels, silences, the alert history and acknowledgements (issue 3).

-- +goose Up

-- An alert rule. spec is the rule's JSON as the API exchanges it (internal/alert.Rule, without its
-- id); name, kind and enabled are copied out of it for uniqueness and for listing.
CREATE TABLE alert_rules (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL
                           CONSTRAINT alert_rules_name_key UNIQUE
                           CONSTRAINT alert_rules_name_check CHECK (btrim(name) <> '' AND octet_length(name) <= 200),
    kind       text        NOT NULL CONSTRAINT alert_rules_kind_check CHECK (kind IN ('threshold', 'agent_silent')),
    spec       jsonb       NOT NULL CONSTRAINT alert_rules_spec_check CHECK (jsonb_typeof(spec) = 'object'),
    enabled    boolean     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where notifications go. secret signs the webhook body (HMAC-SHA256); empty means unsigned.
CREATE TABLE notification_channels (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL
                           CONSTRAINT notification_channels_name_key UNIQUE
                           CONSTRAINT notification_channels_name_check CHECK (btrim(name) <> '' AND octet_length(name) <= 200),
    type       text        NOT NULL CONSTRAINT notification_channels_type_check CHECK (type IN ('webhook')),
    url        text        NOT NULL CONSTRAINT notification_channels_url_check CHECK (url ~ '^https?://'),
    secret     text        NOT NULL DEFAULT '',
    headers    jsonb       NOT NULL DEFAULT '{}'
                           CONSTRAINT notification_channels_headers_check CHECK (jsonb_typeof(headers) = 'object'),
    enabled    boolean     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which channels each rule notifies, mirroring spec->'channels'. It exists for its foreign keys:
-- a rule cannot name a channel that does not exist, and a channel that a rule names cannot be
-- deleted (RESTRICT) until no rule names it; deleting the rule drops its rows.
CREATE TABLE alert_rule_channels (
    rule_id    uuid NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    channel_id uuid NOT NULL CONSTRAINT alert_rule_channels_channel_id_fkey
                             REFERENCES notification_channels (id) ON DELETE RESTRICT,
    PRIMARY KEY (rule_id, channel_id)
);

CREATE INDEX alert_rule_channels_channel_id_idx ON alert_rule_channels (channel_id);

-- A silence holds back notifications of matching alerts during a one-off window (starts_at,
-- ends_at) or a weekly one (weekly: internal/silence.Weekly as JSON), never both.
CREATE TABLE silences (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    matchers   jsonb       NOT NULL CONSTRAINT silences_matchers_check CHECK (jsonb_typeof(matchers) = 'object'),
    starts_at  timestamptz,
    ends_at    timestamptz,
    weekly     jsonb,
    comment    text        NOT NULL DEFAULT '',
    created_by text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT silences_window_check CHECK (
        (weekly IS NULL AND starts_at IS NOT NULL AND ends_at IS NOT NULL AND ends_at > starts_at)
        OR (weekly IS NOT NULL AND jsonb_typeof(weekly) = 'object' AND starts_at IS NULL AND ends_at IS NULL))
);

-- Listing without expired silences skips the one-off ones that have ended.
CREATE INDEX silences_ends_at_idx ON silences (ends_at);

-- Every alert transition, written by the alert-history consumer. id is the transition's
-- deterministic id, so a redelivered event is written once. rule_id has no foreign key: the
-- history of a deleted rule stays.
CREATE TABLE alert_events (
    id               text             PRIMARY KEY CONSTRAINT alert_events_id_check CHECK (id <> ''),
    alert_id         text             NOT NULL,
    rule_id          text             NOT NULL,
    rule_name        text             NOT NULL DEFAULT '',
    kind             text             NOT NULL DEFAULT '',
    agent_id         text             NOT NULL,
    series           text             NOT NULL DEFAULT '',
    metric           text             NOT NULL DEFAULT '',
    from_status      text             NOT NULL,
    to_status        text             NOT NULL,
    severity         text             NOT NULL DEFAULT '',
    value            double precision NOT NULL,
    threshold        double precision,
    recovery_value   double precision,
    duration_seconds double precision NOT NULL DEFAULT 0,
    at               timestamptz      NOT NULL,
    labels           jsonb            NOT NULL DEFAULT '{}'
                                      CONSTRAINT alert_events_labels_check CHECK (jsonb_typeof(labels) = 'object'),
    summary          text             NOT NULL DEFAULT '',
    created_at       timestamptz      NOT NULL DEFAULT now()
);

-- History is read newest first, optionally for one agent, rule, severity or alert.
CREATE INDEX alert_events_at_idx ON alert_events (at DESC, id DESC);
CREATE INDEX alert_events_agent_id_at_idx ON alert_events (agent_id, at DESC);
CREATE INDEX alert_events_rule_id_at_idx ON alert_events (rule_id, at DESC);
CREATE INDEX alert_events_severity_at_idx ON alert_events (severity, at DESC);
CREATE INDEX alert_events_alert_id_at_idx ON alert_events (alert_id, at DESC);

-- Acknowledgements of alerts by operators, kept after the alert resolves.
CREATE TABLE alert_acks (
    id       bigserial   PRIMARY KEY,
    alert_id text        NOT NULL CONSTRAINT alert_acks_alert_id_check CHECK (alert_id <> ''),
    acked_by text        NOT NULL CONSTRAINT alert_acks_acked_by_check CHECK (acked_by <> ''),
    comment  text        NOT NULL DEFAULT '',
    at       timestamptz NOT NULL
);

CREATE INDEX alert_acks_alert_id_at_idx ON alert_acks (alert_id, at);

-- +goose Down
DROP TABLE alert_acks;
DROP TABLE alert_events;
DROP TABLE silences;
DROP TABLE alert_rule_channels;
DROP TABLE notification_channels;
DROP TABLE alert_rules;
