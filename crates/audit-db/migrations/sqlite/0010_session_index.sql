-- The web portal's index of sessions: one row per session, derived from the
-- log and never a source of truth (it is dropped and rebuilt from the events
-- whenever events leave the log or lose their bodies), so that the sessions
-- page filters hundreds of thousands of sessions through indexes instead of
-- reading the log.
CREATE TABLE session_index (
    id          INTEGER PRIMARY KEY,
    session_id  BLOB    NOT NULL UNIQUE,
    technician  TEXT,
    group_name  TEXT,
    address     TEXT,
    host        TEXT,
    created_at  BIGINT  NOT NULL,      -- its session.created, else its first event
    ended_at    BIGINT,
    end_reason  TEXT,
    events      BIGINT  NOT NULL,
    chat_lines  BIGINT  NOT NULL,
    files       BIGINT  NOT NULL,
    recordings  BIGINT  NOT NULL
);
CREATE INDEX session_index_created ON session_index (created_at, id);
CREATE INDEX session_index_technician ON session_index (technician, created_at, id);
CREATE INDEX session_index_group ON session_index (group_name, created_at, id);
CREATE INDEX session_index_address ON session_index (address, created_at, id);

-- The words of each session's chat (lower case, once per session), as an
-- inverted index: a page of sessions whose chat says a word is found by
-- probing (word, session) from the newest session down when the word is
-- common, and from this table when it is rare. `session` is session_index.id.
CREATE TABLE session_words (
    word     TEXT   NOT NULL,
    session  BIGINT NOT NULL,
    PRIMARY KEY (word, session)
) WITHOUT ROWID;

-- The last seq the index has taken in.
CREATE TABLE session_index_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  BIGINT  NOT NULL
);
INSERT INTO session_index_head (one, seq) VALUES (1, 0);
