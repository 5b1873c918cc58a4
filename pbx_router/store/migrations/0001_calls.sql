-- One row per call, written by the call recorder (upsert by call_id: at start, answer and end).
CREATE TABLE calls (
    call_id       text PRIMARY KEY,          -- our id for the call (Asterisk ids are not uuids)
    channel_id    text NOT NULL,
    caller_number text,
    caller_name   text,
    dialled       text,
    started_at    timestamptz NOT NULL,
    answered_at   timestamptz,
    ended_at      timestamptz,
    outcome       text,
    route         jsonb,                     -- {action, target, rule, reason, trace}
    transcript    text,
    intent        text,
    extra         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- When the newest information in this row was submitted (not when it reached the database):
    -- the recorder compares it so a replayed older record never overwrites a newer value.
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX calls_started_at_idx ON calls (started_at);
-- "calls from this number in the last N days"
CREATE INDEX calls_caller_number_started_at_idx ON calls (caller_number, started_at);
