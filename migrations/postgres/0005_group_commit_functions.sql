-- Functions of the group commit's hot path (store/src/postgres.rs). PostgreSQL has no RAISE and no per-statement
-- settings in plain SQL. (SQLite has no counterpart: it holds its write lock for the whole group commit, and it
-- has no notices between replicas.)

-- Plain appends are written as one statement with no transaction around it (`write_appends`). Its update of the
-- sessions applies only where a session's length is still what was read; when another server wrote to one
-- meanwhile, this fails the whole statement, so that none of its inserts stay.
CREATE FUNCTION cmdop_conflict_unless(ok BOOLEAN, message TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = message;
    END IF;
    RETURN ok;
END
$$;

-- Notices to the other replicas' live viewers (`publish_live_notices`), sent about as often as group commits. A
-- NOTIFY gives its transaction an id, so its commit waits for a WAL flush like a write's; a notice is worth
-- nothing after a crash, so this transaction's commit does not wait (the setting applies to the transaction that
-- calls it, which is the statement's own).
CREATE FUNCTION cmdop_notify(channel TEXT, payloads TEXT[]) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_notify(channel, p) FROM unnest(payloads) AS p;
END
$$;
