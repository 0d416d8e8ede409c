-- Offset of the oldest retained transcript chunk. The ring buffer drops chunks from the front; scanning from here
-- (not from 0) keeps each append fast, because deleted rows linger in the index until vacuum.
ALTER TABLE sessions ADD COLUMN retained_from BIGINT NOT NULL DEFAULT 0;
