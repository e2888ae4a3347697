-- 001: the member directory, enrollment requests, local state, peer contacts.

-- Current directory records, one per (kind, subject): the merge rule's winner.
-- data is the signer's envelope, byte for byte; change_no orders changes so a
-- running node can pick up rows another process (the CLI) wrote.
CREATE TABLE directory_records (
    kind        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    hash        BLOB    NOT NULL,
    data        BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    change_no   INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
) WITHOUT ROWID;
CREATE INDEX directory_records_by_change ON directory_records (change_no);

-- Equivocation evidence: a second, different record with the same sequence.
CREATE TABLE directory_evidence (
    kind        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    hash        BLOB    NOT NULL,
    data        BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (kind, subject, hash)
) WITHOUT ROWID;

-- Enrollment requests received from would-be children, and their fate.
CREATE TABLE enrollment_requests (
    subject     TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_at  INTEGER,
    reason      TEXT    NOT NULL DEFAULT '',
    serial      INTEGER,
    PRIMARY KEY (subject, fingerprint)
) WITHOUT ROWID;

-- Small facts about this node: sequence counters, enrollment progress.
CREATE TABLE local_state (
    key   TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;

-- Last successful and failed exchange with each peer.
CREATE TABLE peer_contacts (
    peer         TEXT    PRIMARY KEY,
    last_success INTEGER,
    last_failure INTEGER,
    failures     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
