-- Callback requests callers left, and what staff did about them: claimed ("I am calling them
-- back") and done. Rows are made by the call recorder from call records whose
-- extra->'callback_request' is set (in the same transaction as the call row, so the spool's
-- replays make them too, once: call_id is unique).
--
-- A caller who withheld their number has number NULL and number_withheld true; an empty string
-- is never stored, so staff never see a blank where a number should be.
CREATE TABLE callbacks (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- what staff type
    call_id         text NOT NULL UNIQUE,
    called_at       timestamptz NOT NULL,   -- when the caller called
    number          text,
    number_withheld boolean NOT NULL,
    caller_name     text,
    queue           text,                   -- the team that should call back
    intent          text,
    reason          text,
    status          text NOT NULL DEFAULT 'open',
    claimed_by      text,
    claimed_at      timestamptz,
    done_by         text,
    done_at         timestamptz,
    note            text,
    CONSTRAINT callbacks_status CHECK (status IN ('open', 'claimed', 'done')),
    CONSTRAINT callbacks_number_or_withheld CHECK (
        (number IS NULL) = number_withheld AND (number IS NULL OR number ~ '[0-9]')
    ),
    CONSTRAINT callbacks_claim_complete CHECK ((claimed_by IS NULL) = (claimed_at IS NULL)),
    CONSTRAINT callbacks_claimed_has_claimer CHECK (status <> 'claimed' OR claimed_by IS NOT NULL),
    CONSTRAINT callbacks_done_complete CHECK ((status = 'done') = (done_by IS NOT NULL AND done_at IS NOT NULL))
);

-- The front desk's list: what is not done yet, newest first.
CREATE INDEX callbacks_pending_idx ON callbacks (called_at DESC) WHERE status <> 'done';
CREATE INDEX callbacks_called_at_idx ON callbacks (called_at DESC);

-- Requests recorded before this table existed (they lived only in calls.extra).
INSERT INTO callbacks (call_id, called_at, number, number_withheld, caller_name, queue, intent, reason)
SELECT c.call_id,
       c.started_at,
       CASE WHEN btrim(c.caller_number) ~ '[0-9]' THEN btrim(c.caller_number) END,
       NOT coalesce(btrim(c.caller_number) ~ '[0-9]', false),
       NULLIF(btrim(c.caller_name), ''),
       c.extra->'callback_request'->>'queue',
       c.intent,
       c.extra->'callback_request'->>'reason'
FROM calls c
WHERE c.extra ? 'callback_request'
ON CONFLICT (call_id) DO NOTHING;
