-- Slack-compatible incoming-webhook channels (issue 10): same URL rules as webhooks, another body.

-- +goose Up
ALTER TABLE notification_channels
    DROP CONSTRAINT notification_channels_type_check,
    ADD CONSTRAINT notification_channels_type_check CHECK (type IN ('webhook', 'slack'));

-- +goose Down
UPDATE notification_channels SET type = 'webhook' WHERE type = 'slack';
ALTER TABLE notification_channels
    DROP CONSTRAINT notification_channels_type_check,
    ADD CONSTRAINT notification_channels_type_check CHECK (type IN ('webhook'));
