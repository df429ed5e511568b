-- Key rotation with a grace period (issue 10): the key replaced by a rotation may keep working
-- until previous_key_expires_at, so a fleet can be re-keyed without dropping data.

-- +goose Up
ALTER TABLE agents
    ADD COLUMN previous_key_hash       text
                                       CONSTRAINT agents_previous_key_hash_key UNIQUE
                                       CONSTRAINT agents_previous_key_hash_check CHECK (previous_key_hash ~ '^[0-9a-f]{64}$'),
    ADD COLUMN previous_key_expires_at timestamptz,
    ADD CONSTRAINT agents_previous_key_check CHECK ((previous_key_hash IS NULL) = (previous_key_expires_at IS NULL));

-- +goose Down
ALTER TABLE agents
    DROP CONSTRAINT agents_previous_key_check,
    DROP COLUMN previous_key_expires_at,
    DROP COLUMN previous_key_hash;
