-- 002: documents, their delivery, receipts, the outbox and dedupe.

-- Documents this node sent or received, with their metadata for listing and search.
-- content is the msgpack document content without attachment data (see attachments).
CREATE TABLE documents (
    doc_id         BLOB    PRIMARY KEY,
    direction      TEXT    NOT NULL CHECK (direction IN ('sent', 'received')),
    origin         TEXT    NOT NULL,
    title          TEXT    NOT NULL,
    doc_number     TEXT    NOT NULL DEFAULT '',
    kind           TEXT    NOT NULL,
    urgency        TEXT    NOT NULL DEFAULT '',
    issuer         TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    deadline       INTEGER,
    in_reply_to    BLOB,
    stored_at      INTEGER NOT NULL,
    content        BLOB    NOT NULL
) WITHOUT ROWID;
CREATE INDEX documents_by_direction ON documents (direction, stored_at);

-- Attachment bytes, content-addressed: the same file sent twice is stored once.
CREATE TABLE attachments (
    sha256 BLOB    PRIMARY KEY,
    size   INTEGER NOT NULL,
    data   BLOB    NOT NULL
) WITHOUT ROWID;

-- Sending side: one row per recipient of a sent document (its document frame).
CREATE TABLE deliveries (
    message_id BLOB    PRIMARY KEY,
    doc_id     BLOB    NOT NULL REFERENCES documents (doc_id),
    recipient  TEXT    NOT NULL,
    copy       TEXT    NOT NULL CHECK (copy IN ('main', 'cc')),
    state      TEXT    NOT NULL DEFAULT 'sent',
    last_seq   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX deliveries_by_document ON deliveries (doc_id);

-- Receiving side: the document frame as it arrived, and where its workflow stands.
CREATE TABLE inbound (
    message_id BLOB    PRIMARY KEY,
    doc_id     BLOB    NOT NULL UNIQUE REFERENCES documents (doc_id),
    origin     TEXT    NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'sent',  -- 'delivered' once its first step is recorded
    last_seq   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    frame      BLOB    NOT NULL
) WITHOUT ROWID;

-- Workflow steps of one document at one recipient, numbered from 1. On the
-- receiving side every step is applied; on the sending side a receipt that arrives
-- ahead of a missing one waits (applied = 0) until the gap is filled.
CREATE TABLE receipts (
    message_id BLOB    NOT NULL,
    seq        INTEGER NOT NULL,
    step       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '',
    applied    INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;

-- Frames waiting to go to a next hop: this node's own and those it relays.
CREATE TABLE outbox (
    message_id  BLOB    PRIMARY KEY,
    next_hop    TEXT    NOT NULL,
    destination TEXT    NOT NULL,
    frame       BLOB    NOT NULL,
    enqueued_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_by_hop ON outbox (next_hop, enqueued_at);

-- Every frame id this node has accepted (dedupe at every hop), kept for the replay window.
CREATE TABLE seen (
    message_id  BLOB    PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_by_time ON seen (received_at);

-- API tokens the CLI creates; only their SHA-256 is kept.
CREATE TABLE api_tokens (
    token_hash BLOB    PRIMARY KEY,
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
