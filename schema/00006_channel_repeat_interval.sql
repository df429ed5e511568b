-- Repeat interval of a notification channel (issue 10): a still-firing alert is sent to the
-- channel again every repeat_interval_seconds until it resolves; 0 never repeats. The bounds
-- (0, or 1 minute to 30 days) are alert.Channel.Validate's; the column only refuses negatives.

-- +goose Up
ALTER TABLE notification_channels
    ADD COLUMN repeat_interval_seconds integer NOT NULL DEFAULT 0
        CONSTRAINT notification_channels_repeat_interval_check CHECK (repeat_interval_seconds >= 0);

-- +goose Down
ALTER TABLE notification_channels DROP COLUMN repeat_interval_seconds;
