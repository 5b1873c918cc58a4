-- Staff overrides (close/open/redirect a queue, redirect an intent, after-hours now, agent
-- presence): every one ever made stays here as the record of who changed routing, when and why.
-- A cancelled override keeps its original expiry; cancelled_* say when it really ended.
-- ``kind`` is not constrained here: the daemon validates kinds, and a kind added later must not
-- need a migration (rows it cannot read are skipped and logged on load).
CREATE TABLE overrides (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL,
    scope         text NOT NULL,
    target        jsonb,                    -- a target name, a presence, or null
    author        text NOT NULL,
    reason        text NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    cancelled_at  timestamptz,
    cancelled_by  text,
    cancel_reason text,
    CONSTRAINT overrides_expire_after_creation CHECK (expires_at > created_at),
    CONSTRAINT overrides_cancel_complete CHECK (
        (cancelled_at IS NULL AND cancelled_by IS NULL AND cancel_reason IS NULL)
        OR (cancelled_at IS NOT NULL AND cancelled_by IS NOT NULL AND cancel_reason IS NOT NULL)
    )
);

-- "what is in force now" on start-up: the live ones are few, the record grows for ever.
CREATE INDEX overrides_live_idx ON overrides (expires_at) WHERE cancelled_at IS NULL;
CREATE INDEX overrides_created_at_idx ON overrides (created_at DESC);
