-- An append-only dataset of entity versions (Sesam's model); {name} is e.g. crm_customer.
CREATE TABLE IF NOT EXISTS {name} (
    _id VARCHAR NOT NULL,          -- namespaced id, e.g. crm-customer:C1
    _seq BIGINT NOT NULL,          -- dataset sequence number of this version
    _hash VARCHAR NOT NULL,        -- hash of the body
    _deleted BOOLEAN NOT NULL,
    _ts TIMESTAMP NOT NULL,        -- when the sync wrote this version
    _previous BIGINT,              -- _seq of the prior version of this _id
    _source_id VARCHAR NOT NULL,   -- the id in the source system
    _modified VARCHAR,             -- the source's modification time (UpdatedAt / modifiedAt)
    _version BIGINT,               -- the source's version counter, where it has one (CRM)
    body JSON{zstd}  -- zstd where the file's format allows it (store/connection.py, `zstd_clause`)
);
CREATE OR REPLACE VIEW {name}_current AS
    SELECT * FROM {name} QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1;
