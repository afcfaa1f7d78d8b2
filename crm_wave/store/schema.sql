-- Bookkeeping tables of the sync. Dataset tables (crm_customer, wave_invoice, ...) are
-- created per dataset by Store.ensure_dataset; see datasets.sql.
CREATE TABLE IF NOT EXISTS cursors (
    dataset VARCHAR PRIMARY KEY,
    cursor VARCHAR,
    last_full_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);
-- Datasets a push wrote to (answered at `written_at`) that no collect begun after that write has read
-- yet: a global step reads such a dataset back before it merges (another sync's push, not read back).
CREATE TABLE IF NOT EXISTS unread_writes (
    dataset VARCHAR PRIMARY KEY,
    written_at TIMESTAMP NOT NULL
);
-- One row per global entity: which CRM and Wave records it stands for, and how the link was made.
-- {zstd}: zstd where the file's format allows it (store/connection.py, `zstd_clause`).
CREATE TABLE IF NOT EXISTS links (
    entity VARCHAR NOT NULL,
    global_id VARCHAR{zstd} NOT NULL,
    crm_id VARCHAR{zstd},
    wave_id VARCHAR{zstd},
    how VARCHAR NOT NULL,
    linked_at TIMESTAMP NOT NULL,
    PRIMARY KEY (entity, global_id)
);
-- The last values both sides agreed on, per global entity (base of the three-way merge).
CREATE TABLE IF NOT EXISTS agreed (
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    "values" JSON{zstd} NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (entity, global_id)
);
CREATE TABLE IF NOT EXISTS conflicts (
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    crm_value VARCHAR,
    wave_value VARCHAR,
    base_value VARCHAR,
    winner VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detected_at TIMESTAMP NOT NULL
);
-- Records the global step could not read (its mapping cannot take their body): each held at its last
-- readable version or left out until a new version of it reads (crm_wave/store/unreadable.py).
CREATE TABLE IF NOT EXISTS unreadable_records (
    system VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    PRIMARY KEY (system, entity, record_id)
);
-- Creates whose outcome is not yet known: written before the call, removed after the link is recorded.
CREATE TABLE IF NOT EXISTS intents (
    system VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    payload JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (system, entity, global_id)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    system VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    record_id VARCHAR,
    op VARCHAR NOT NULL,
    field VARCHAR,
    message VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    changes_hash VARCHAR,          -- the version that failed; a new version starts over
    PRIMARY KEY (system, entity, global_id)
);
-- Operator confirmations of pushes the circuit breaker stopped (one per share content).
CREATE TABLE IF NOT EXISTS confirmations (
    system VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    work_hash VARCHAR NOT NULL,
    confirmed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (system, entity, work_hash)
);
-- What was written to which system, when, why, with before/after values.
CREATE TABLE IF NOT EXISTS sync_log (
    logged_at TIMESTAMP NOT NULL,
    run_id VARCHAR,
    system VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    record_id VARCHAR,
    op VARCHAR NOT NULL,
    changes JSON,
    before JSON,
    outcome VARCHAR NOT NULL
);
-- What changed since an incremental step last ran, besides new dataset versions: links and agreed
-- values written (by pushes, by the global step), golden rows rewritten by the global step.
-- global_id "*" stands for every global id of the entity (after a full rebuild). Rows every
-- step has read are deleted.
CREATE SEQUENCE IF NOT EXISTS change_seq;
CREATE TABLE IF NOT EXISTS changes (
    seq BIGINT NOT NULL,
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,         -- link | agreed | golden
    writer VARCHAR                 -- 'global' when the global step wrote it itself
);
-- How far each incremental step (global_<type>, share_<system>_<type>) has read: a dataset's
-- _seq, the changes' seq, and the fingerprint of the mapping it was built with.
CREATE TABLE IF NOT EXISTS step_marks (
    step VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    mark BIGINT NOT NULL,
    PRIMARY KEY (step, source)
);
-- The conflict queue: field differences that wait for a person (policy `review`, and the first sync),
-- and their decisions. Rows are kept as history: status open -> decided -> applied, or superseded when
-- a later edit (or a policy change) made the item moot. See crm_wave/store/queue.py.
CREATE SEQUENCE IF NOT EXISTS conflict_queue_seq;
CREATE TABLE IF NOT EXISTS conflict_queue (
    id BIGINT PRIMARY KEY DEFAULT nextval('conflict_queue_seq'),
    entity VARCHAR NOT NULL,
    global_id VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,         -- first_sync | review
    crm_value VARCHAR,
    wave_value VARCHAR,
    base_value VARCHAR,
    crm_modified VARCHAR,
    wave_modified VARCHAR,
    detected_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,       -- open | decided | applied | superseded
    decision VARCHAR,              -- crm | wave | value
    value VARCHAR,                 -- the decided value (canonical cell)
    decided_by VARCHAR,
    decided_at TIMESTAMP,
    closed_at TIMESTAMP
);
-- Which rows of the golden and share tables, links, agreed and the conflict queue each transaction wrote, by global id
-- (NULL: any row), so a segment snapshot reads just those (crm_wave/store/writes.py). The oldest
-- rows are pruned; row_writes_state holds the log's identity and the highest seq pruned.
CREATE SEQUENCE IF NOT EXISTS row_write_seq;
CREATE TABLE IF NOT EXISTS row_writes (
    seq BIGINT NOT NULL,
    table_name VARCHAR NOT NULL,
    global_id VARCHAR
);
CREATE TABLE IF NOT EXISTS row_writes_state (
    log_id VARCHAR NOT NULL,
    pruned BIGINT NOT NULL
);
INSERT INTO row_writes_state SELECT uuid()::VARCHAR, 0 WHERE NOT EXISTS (SELECT 1 FROM row_writes_state);
-- Records this sync wrote to Wave, with the `modifiedAt` Wave answered and when the answer came:
-- a Wave read that sees only these modified near its start may move its cursor past them
-- (crm_wave/sync/collect.py). Rows older than an hour are pruned.
CREATE TABLE IF NOT EXISTS own_writes (
    dataset VARCHAR NOT NULL,
    source_id VARCHAR NOT NULL,
    modified VARCHAR NOT NULL,
    written_at TIMESTAMP NOT NULL
);
-- File-backed tables (crm_wave/store/files.py): the generation of Parquet parts each one reads, and the folder
-- its view reads them from; a rebuild in progress is recorded under its staging name until it is published.
CREATE TABLE IF NOT EXISTS table_files (
    name VARCHAR PRIMARY KEY,
    generation VARCHAR NOT NULL,
    parts INTEGER NOT NULL,
    root VARCHAR NOT NULL
);
