-- Every group commit updates each written session's last_seen_at. With it in an index, each of those updates
-- also wrote new entries into every index of the table (PostgreSQL cannot do a heap-only update when an indexed
-- column changes): ~65 ms per batch of a thousand sessions. The reaper that reads last_seen_at finds the active
-- sessions through sessions_state_started (state first) and filters them.
DROP INDEX sessions_active;
