-- Repeat interval and grouping of a notification channel (issue 10): a still-firing alert is
-- sent to the channel again every repeat_interval_seconds until it resolves (0 never repeats);
-- transitions with the same values of the group_by labels within group_wait_seconds go out as
-- one notification (group_by [] sends each alone). The bounds are alert.Channel.Validate's; the
-- columns only refuse what could never be valid.

-- +goose Up
ALTER TABLE notification_channels
    ADD COLUMN repeat_interval_seconds integer NOT NULL DEFAULT 0
        CONSTRAINT notification_channels_repeat_interval_check CHECK (repeat_interval_seconds >= 0),
    ADD COLUMN group_by jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT notification_channels_group_by_check CHECK (jsonb_typeof(group_by) = 'array'),
    ADD COLUMN group_wait_seconds integer NOT NULL DEFAULT 0
        CONSTRAINT notification_channels_group_wait_check CHECK (group_wait_seconds >= 0);

-- +goose Down
ALTER TABLE notification_channels
    DROP COLUMN repeat_interval_seconds,
    DROP COLUMN group_by,
    DROP COLUMN group_wait_seconds;
