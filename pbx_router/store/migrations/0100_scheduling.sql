-- Appointment scheduling: clinic reference data, availability, patients, appointments.
--
-- The one invariant everything else leans on: two live appointments (held or booked) of one
-- provider never overlap. The database enforces it (exclusion constraint), so no amount of
-- concurrency in the daemon, the CLI or an import can break it.

-- btree_gist lets a GiST index compare provider ids with "=" next to ranges with "&&".
-- It is a trusted extension (PostgreSQL >= 13): a database owner may create it.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Settings of the scheduling domain (one row): the clinic's time zone is data, not code.
CREATE TABLE scheduling_settings (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    timezone  text NOT NULL DEFAULT 'UTC',
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO scheduling_settings (id) VALUES (true);

CREATE TABLE locations (
    id       text PRIMARY KEY,
    name     text NOT NULL,
    address  text NOT NULL DEFAULT ''
);

CREATE TABLE providers (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    -- What callers say ("doctor patel", "patel"); matched by the voice flow's parser.
    aliases      text[] NOT NULL DEFAULT '{}',
    location_id  text REFERENCES locations (id),
    active       boolean NOT NULL DEFAULT true
);

CREATE TABLE appointment_types (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 480),
    -- Distance between candidate start times; defaults to the duration.
    step_minutes     integer CHECK (step_minutes IS NULL OR step_minutes BETWEEN 5 AND 480),
    keywords         text[] NOT NULL DEFAULT '{}',
    -- Only staff may book it (e.g. procedures): the phone flow never offers it.
    phone_bookable   boolean NOT NULL DEFAULT true
);

CREATE TABLE appointment_type_providers (
    type_id     text NOT NULL REFERENCES appointment_types (id) ON DELETE CASCADE,
    provider_id text NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    PRIMARY KEY (type_id, provider_id)
);

-- Weekly hours, in the clinic's wall-clock time (so 08:00 stays 08:00 across DST).
-- Templates of one provider may overlap; the slot generator takes their union.
CREATE TABLE availability_templates (
    id           bigserial PRIMARY KEY,
    provider_id  text NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    location_id  text REFERENCES locations (id),
    weekday      smallint NOT NULL CHECK (weekday BETWEEN 0 AND 6),  -- 0 = Monday (ISO - 1)
    start_time   time NOT NULL,
    end_time     time NOT NULL,
    valid_from   date,
    valid_until  date,                                               -- inclusive
    CHECK (start_time < end_time),
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from <= valid_until)
);
CREATE INDEX availability_templates_provider_idx ON availability_templates (provider_id);

-- Vacations and blocked time (unavailable) or extra hours (available); provider NULL = everyone.
CREATE TABLE availability_exceptions (
    id           bigserial PRIMARY KEY,
    provider_id  text REFERENCES providers (id) ON DELETE CASCADE,
    location_id  text REFERENCES locations (id),
    during       tstzrange NOT NULL CHECK (NOT isempty(during) AND lower_inc(during) AND NOT upper_inc(during)),
    kind         text NOT NULL CHECK (kind IN ('unavailable', 'available')),
    reason       text NOT NULL DEFAULT ''
);
CREATE INDEX availability_exceptions_during_idx ON availability_exceptions USING gist (during);

CREATE TABLE patients (
    id                 bigserial PRIMARY KEY,
    record_number      text NOT NULL UNIQUE,
    first_name         text NOT NULL,
    last_name          text NOT NULL,
    date_of_birth      date NOT NULL,
    preferred_language text NOT NULL DEFAULT 'en',
    usual_provider_id  text REFERENCES providers (id),
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- Numbers are stored normalised (E.164, e.g. +15550101234). One number may be shared by a
-- family, so a caller ID can match several patients: verification picks by date of birth.
CREATE TABLE patient_phones (
    patient_id bigint NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    number     text NOT NULL,
    kind       text NOT NULL DEFAULT 'mobile',
    PRIMARY KEY (number, patient_id)
);

CREATE TABLE appointments (
    id               bigserial PRIMARY KEY,
    patient_id       bigint NOT NULL REFERENCES patients (id),
    provider_id      text NOT NULL REFERENCES providers (id),
    location_id      text REFERENCES locations (id),
    type_id          text NOT NULL REFERENCES appointment_types (id),
    during           tstzrange NOT NULL CHECK (NOT isempty(during) AND lower_inc(during) AND NOT upper_inc(during)),
    status           text NOT NULL CHECK (status IN ('held', 'booked', 'cancelled', 'no_show', 'expired', 'completed')),
    hold_expires_at  timestamptz,
    source           text NOT NULL CHECK (source IN ('phone', 'staff', 'import')),
    call_id          text,
    replaces_id      bigint REFERENCES appointments (id),
    cancel_reason    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'held' OR hold_expires_at IS NOT NULL),
    -- The invariant: live appointments of one provider never overlap.
    CONSTRAINT appointments_no_overlap EXCLUDE USING gist (provider_id WITH =, during WITH &&)
        WHERE (status IN ('held', 'booked'))
);
CREATE INDEX appointments_patient_idx ON appointments (patient_id, lower(during));
CREATE INDEX appointments_held_idx ON appointments (hold_expires_at) WHERE status = 'held';

-- Idempotency keys: a retried request (same key) returns the first result instead of acting twice.
CREATE TABLE scheduling_requests (
    key            text PRIMARY KEY,
    operation      text NOT NULL,
    fingerprint    text NOT NULL,
    appointment_id bigint REFERENCES appointments (id),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Failed date-of-birth checks per caller number, so hanging up and calling back does not reset
-- the attempt count. Numbers only (no patient link): the table reveals nothing about patients.
CREATE TABLE verification_failures (
    number    text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX verification_failures_number_idx ON verification_failures (number, failed_at);
