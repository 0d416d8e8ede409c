-- Every group commit inserts one transcript_chunks row per chunk, about 10,000 a second for a thousand live
-- sessions, and the foreign key to sessions made PostgreSQL check each of them with a query of its own (about a
-- sixth of its CPU in benchmark (b)). It adds nothing there: chunks are only written by the group commit, whose
-- statement (or transaction) also updates each of their sessions and fails unless every one was there
-- (`cmdop_conflict_unless`, migration 0005), holding the session's row lock until it commits. What the key also
-- did, deleting a session's chunks with it, a trigger does, once per DELETE statement: a DELETE that waited for a
-- group commit's lock finds that commit's chunks too (each statement of the trigger reads what is committed
-- when it starts).
ALTER TABLE transcript_chunks DROP CONSTRAINT transcript_chunks_session_id_fkey;

CREATE FUNCTION cmdop_delete_session_chunks() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM transcript_chunks c USING deleted_sessions d WHERE c.session_id = d.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_delete_chunks AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS deleted_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION cmdop_delete_session_chunks();
