-- Repeat interval and grouping of a notification channel (issue 10): a still-firing alert is
-- sent to the channel again every repeat_interval_seconds until it resolves (0 never repeats);
-- transitions with the same values of the group_by labels within group_wait_seconds go out as
-- one notification (group_by [] sends each alone). Type email sends to the addresses in email_to
-- through the notifier's SMTP server and has no URL. The bounds are alert.Channel.Validate's; the
-- columns only refuse what could never be valid.

-- +goose Up
ALTER TABLE notification_channels
    ADD COLUMN repeat_interval_seconds integer NOT NULL DEFAULT 0
        CONSTRAINT notification_channels_repeat_interval_check CHECK (repeat_interval_seconds >= 0),
    ADD COLUMN group_by jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT notification_channels_group_by_check CHECK (jsonb_typeof(group_by) = 'array'),
    ADD COLUMN group_wait_seconds integer NOT NULL DEFAULT 0
        CONSTRAINT notification_channels_group_wait_check CHECK (group_wait_seconds >= 0),
    ADD COLUMN email_to jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT notification_channels_email_to_check CHECK (jsonb_typeof(email_to) = 'array'),
    DROP CONSTRAINT notification_channels_type_check,
    ADD CONSTRAINT notification_channels_type_check CHECK (type IN ('webhook', 'slack', 'email')),
    DROP CONSTRAINT notification_channels_url_check,
    ADD CONSTRAINT notification_channels_url_check CHECK (
        (type = 'email' AND url = '' AND jsonb_array_length(email_to) > 0) OR (type <> 'email' AND url ~ '^https?://'));

-- +goose Down
-- E-mail channels cannot be kept: they are removed, with the rules' references to them.
DELETE FROM alert_rule_channels WHERE channel_id IN (SELECT id FROM notification_channels WHERE type = 'email');
DELETE FROM notification_channels WHERE type = 'email';
ALTER TABLE notification_channels
    DROP CONSTRAINT notification_channels_url_check,
    ADD CONSTRAINT notification_channels_url_check CHECK (url ~ '^https?://'),
    DROP CONSTRAINT notification_channels_type_check,
    ADD CONSTRAINT notification_channels_type_check CHECK (type IN ('webhook', 'slack')),
    DROP COLUMN email_to,
    DROP COLUMN repeat_interval_seconds,
    DROP COLUMN group_by,
    DROP COLUMN group_wait_seconds;
