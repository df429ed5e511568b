-- Pipeline alert rules (issue 10): rule kind 'pipeline', and the built-in pipeline rules, which
-- operators edit, disable or delete through the rules API like any other rule. A rule already
-- named like a built-in one is left alone (that built-in is then not added).

-- +goose Up
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_kind_check CHECK (kind IN ('threshold', 'agent_silent', 'pipeline'));

INSERT INTO alert_rules (name, kind, spec, enabled)
SELECT name, 'pipeline', jsonb_build_object('name', name, 'kind', 'pipeline', 'enabled', true) || spec::jsonb, true
FROM (VALUES
    ('Pipeline: consumer group lag',
     '{"severity": "critical", "for": "2m", "pipeline": {"check": "group_lag", "groups": ["influx-writer", "pg-sync", "alerter", "rollup"], "bound": 100000}, "summary": "Consumer group {{.Labels.group}} lags {{.Value}} entries behind (bound {{.Threshold}})"}'),
    ('Pipeline: dead letters',
     '{"severity": "warning", "pipeline": {"check": "dead_letters"}, "summary": "{{.Value}} dead letters in {{.Labels.stream}}: inspect and replay them in the pipeline view"}'),
    ('Pipeline: no live consumer',
     '{"severity": "critical", "pipeline": {"check": "no_consumer", "groups": ["influx-writer", "pg-sync", "alerter", "rollup"], "idle": "1m"}, "summary": "Consumer group {{.Labels.group}} has had no consumer reading within 1m"}'),
    ('Pipeline: store unreachable',
     '{"severity": "critical", "for": "1m", "pipeline": {"check": "store_down", "stores": ["redis", "postgresql", "influxdb"]}, "summary": "The alerter cannot reach {{.Labels.store}}"}'),
    ('Watchdog',
     '{"severity": "warning", "pipeline": {"check": "watchdog"}, "summary": "Always firing while alerting works: route it to a dead man''s switch"}')
) AS builtin (name, spec)
ON CONFLICT (name) DO NOTHING;

-- +goose Down
DELETE FROM alert_rules WHERE kind = 'pipeline';
ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_kind_check CHECK (kind IN ('threshold', 'agent_silent'));
