-- The whole product's schema, SQLite dialect. IDs are UUID v7 stored as 16-byte BLOBs; timestamps are
-- milliseconds since the Unix epoch (INTEGER), so that they order and compare exactly.

CREATE TABLE fleets (
    id                      BLOB PRIMARY KEY NOT NULL,
    name                    TEXT NOT NULL UNIQUE,
    -- The plan's bounds for retention; retention_days must stay inside them.
    retention_min_days      INTEGER NOT NULL DEFAULT 30,
    retention_max_days      INTEGER NOT NULL DEFAULT 365,
    retention_days          INTEGER NOT NULL DEFAULT 90,
    transcript_limit_bytes  INTEGER NOT NULL DEFAULT 8388608,
    -- What happens to commands sent from the cabinet's legacy web terminal.
    cabinet_command_policy  TEXT NOT NULL DEFAULT 'flag' CHECK (cabinet_command_policy IN ('flag', 'block')),
    created_at              INTEGER NOT NULL,
    CHECK (retention_min_days <= retention_days AND retention_days <= retention_max_days),
    CHECK (transcript_limit_bytes > 0)
);

CREATE TABLE members (
    id              BLOB PRIMARY KEY NOT NULL,
    email           TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    password_hash   TEXT,
    is_bot          INTEGER NOT NULL DEFAULT 0 CHECK (is_bot IN (0, 1)),
    created_at      INTEGER NOT NULL
);

CREATE TABLE fleet_members (
    fleet_id    BLOB NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,
    member_id   BLOB NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (fleet_id, member_id)
);
CREATE INDEX fleet_members_member ON fleet_members (member_id);

CREATE TABLE machines (
    id          BLOB PRIMARY KEY NOT NULL,
    fleet_id    BLOB NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (fleet_id, name)
);

CREATE TABLE machine_grants (
    machine_id  BLOB NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    member_id   BLOB NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (machine_id, member_id)
);
CREATE INDEX machine_grants_member ON machine_grants (member_id);

CREATE TABLE api_tokens (
    id              BLOB PRIMARY KEY NOT NULL,
    member_id       BLOB NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    token_hash      BLOB NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    revoked_at      INTEGER
);

CREATE TABLE login_sessions (
    id          BLOB PRIMARY KEY NOT NULL,
    member_id   BLOB NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX login_sessions_expiry ON login_sessions (expires_at);

CREATE TABLE chat_threads (
    id          BLOB PRIMARY KEY NOT NULL,
    fleet_id    BLOB NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    created_by  BLOB NOT NULL REFERENCES members(id),
    created_at  INTEGER NOT NULL
);

CREATE TABLE chat_messages (
    id          BLOB PRIMARY KEY NOT NULL,
    thread_id   BLOB NOT NULL REFERENCES chat_threads(id) ON DELETE CASCADE,
    author_id   BLOB NOT NULL REFERENCES members(id),
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX chat_messages_thread ON chat_messages (thread_id, created_at);

CREATE TABLE sessions (
    id              BLOB PRIMARY KEY NOT NULL,
    fleet_id        BLOB NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,
    machine_id      BLOB NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    started_by      BLOB NOT NULL REFERENCES members(id),
    command         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('active', 'ended')),
    end_reason      TEXT CHECK (end_reason IN ('exited', 'recorder_lost')),
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    exit_code       INTEGER,
    exit_signal     INTEGER,
    cols            INTEGER NOT NULL CHECK (cols > 0 AND cols <= 65535),
    rows            INTEGER NOT NULL CHECK (rows > 0 AND rows <= 65535),
    chat_thread_id  BLOB REFERENCES chat_threads(id) ON DELETE SET NULL,
    -- Offset after the last byte received: the transcript's total length.
    total_bytes     INTEGER NOT NULL DEFAULT 0,
    -- Bytes held in transcript_chunks.
    retained_bytes  INTEGER NOT NULL DEFAULT 0,
    -- Oldest bytes dropped by the ring buffer.
    truncated_bytes INTEGER NOT NULL DEFAULT 0,
    -- Bytes declared lost by the recorder (sum of transcript_gaps.bytes_lost).
    lost_bytes      INTEGER NOT NULL DEFAULT 0,
    -- Last time the recorder was heard from (for the recorder-lost grace period).
    last_seen_at    INTEGER NOT NULL,
    CHECK ((state = 'active') = (ended_at IS NULL))
);
-- Keyset pagination is on (started_at, id), newest first, within the filters.
CREATE INDEX sessions_started ON sessions (started_at DESC, id DESC);
CREATE INDEX sessions_fleet_started ON sessions (fleet_id, started_at DESC, id DESC);
CREATE INDEX sessions_machine_started ON sessions (machine_id, started_at DESC, id DESC);
CREATE INDEX sessions_user_started ON sessions (started_by, started_at DESC, id DESC);
CREATE INDEX sessions_active ON sessions (state, last_seen_at);

CREATE TABLE transcript_chunks (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    byte_offset INTEGER NOT NULL,
    t_ms        INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    PRIMARY KEY (session_id, byte_offset)
) WITHOUT ROWID;

CREATE TABLE transcript_gaps (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at_offset   INTEGER NOT NULL,
    bytes_lost  INTEGER NOT NULL CHECK (bytes_lost > 0),
    reason      TEXT NOT NULL CHECK (reason IN ('recorder_offline')),
    PRIMARY KEY (session_id, at_offset)
);

CREATE TABLE transcript_resizes (
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    at_offset   INTEGER NOT NULL,
    t_ms        INTEGER NOT NULL,
    cols        INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    PRIMARY KEY (session_id, at_offset, t_ms)
);

CREATE TABLE session_clients (
    id          BLOB PRIMARY KEY NOT NULL,
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('desktop', 'cli', 'bot', 'browser')),
    name        TEXT NOT NULL,
    member_id   BLOB REFERENCES members(id) ON DELETE SET NULL,
    attached_at INTEGER NOT NULL,
    detached_at INTEGER
);
CREATE INDEX session_clients_session ON session_clients (session_id, attached_at);

CREATE TABLE share_links (
    id          BLOB PRIMARY KEY NOT NULL,
    session_id  BLOB NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    created_by  BLOB NOT NULL REFERENCES members(id),
    ttl_hours   INTEGER NOT NULL CHECK (ttl_hours >= 0),
    created_at  INTEGER NOT NULL,
    -- NULL: never expires (ttl_hours = 0).
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX share_links_session ON share_links (session_id);

CREATE TABLE audit_events (
    id          BLOB PRIMARY KEY NOT NULL,
    fleet_id    BLOB REFERENCES fleets(id) ON DELETE CASCADE,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('member', 'share', 'system')),
    actor_id    BLOB,
    action      TEXT NOT NULL,
    target_kind TEXT,
    target_id   BLOB,
    -- JSON object with the event's details.
    details     TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_events_fleet ON audit_events (fleet_id, created_at DESC);

CREATE TABLE cabinet_commands (
    id          BLOB PRIMARY KEY NOT NULL,
    fleet_id    BLOB NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,
    machine_id  BLOB NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    session_id  BLOB REFERENCES sessions(id) ON DELETE SET NULL,
    member_id   BLOB NOT NULL REFERENCES members(id),
    command     TEXT NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('flagged', 'blocked')),
    created_at  INTEGER NOT NULL
);
CREATE INDEX cabinet_commands_fleet ON cabinet_commands (fleet_id, created_at DESC);

CREATE TABLE webhook_endpoints (
    id          BLOB PRIMARY KEY NOT NULL,
    fleet_id    BLOB NOT NULL REFERENCES fleets(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    -- HMAC signing key: it must be usable to sign, so it is stored, not hashed.
    secret      TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at  INTEGER NOT NULL
);

CREATE TABLE webhook_outbox (
    id              BLOB PRIMARY KEY NOT NULL,
    endpoint_id     BLOB NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    event_id        BLOB NOT NULL REFERENCES audit_events(id) ON DELETE CASCADE,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_at, next_attempt_at);
