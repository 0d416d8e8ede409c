-- The sessions list's sections (active, ended) walk this index in list order instead of sorting every session of
-- the state (measured by `cmdop-bench list`).
CREATE INDEX sessions_state_started ON sessions (state, started_at DESC, id DESC);
