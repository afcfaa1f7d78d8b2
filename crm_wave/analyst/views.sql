-- Analyst views, created in every snapshot file by crm_wave.analyst.views.create_views.
--
-- Each object starts at a line "-- view: <name>". `{table}` stands for a table of the sync's
-- database; create_views replaces it with the table, or with an empty typed stand-in when the
-- snapshot was taken before that table existed (e.g. before the first pass). `{golden:table}`
-- is the golden column list of a global table (no `__crm` / `__wave` columns).
-- Timestamps (`*_at`, valid_from/valid_to) are UTC, without a time zone.

-- view: crm_customers_now
-- Every CRM customer as last collected, deleted ones left out.
CREATE OR REPLACE VIEW crm_customers_now AS
SELECT
    _source_id AS crm_id,
    body->>'$.CustomerNumber' AS customer_number,
    body->>'$.Type' AS type,
    body->>'$.Name' AS name,
    body->>'$.FirstName' AS first_name,
    body->>'$.LastName' AS last_name,
    body->>'$.Email' AS email,
    body->>'$.Phone' AS phone,
    body->>'$.Mobile' AS mobile,
    body->>'$.Website' AS website,
    body->>'$.Currency' AS currency,
    body->>'$.StreetAddress1' AS street_address1,
    body->>'$.StreetAddress2' AS street_address2,
    body->>'$.ZipCode' AS zip_code,
    body->>'$.City' AS city,
    body->>'$.State' AS state,
    body->>'$.Country' AS country,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _version AS version,
    _ts AS collected_at,
    _id AS id,
    body
FROM {crm_customer}
QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1 AND NOT _deleted;

-- view: crm_products_now
CREATE OR REPLACE VIEW crm_products_now AS
SELECT
    _source_id AS crm_id,
    body->>'$.Sku' AS sku,
    body->>'$.Name' AS name,
    body->>'$.Description' AS description,
    try_cast(body->>'$.UnitPrice' AS DECIMAL(18, 5)) AS unit_price,
    try_cast(body->>'$.IsArchived' AS BOOLEAN) AS is_archived,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _version AS version,
    _ts AS collected_at,
    _id AS id,
    body
FROM {crm_product}
QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1 AND NOT _deleted;

-- view: crm_orders_now
CREATE OR REPLACE VIEW crm_orders_now AS
SELECT
    _source_id AS crm_id,
    body->>'$.OrderNumber' AS order_number,
    body->>'$.CustomerId' AS customer_crm_id,
    body->>'$.Title' AS title,
    body->>'$.Status' AS status,
    try_cast(body->>'$.OrderDate' AS DATE) AS order_date,
    try_cast(body->>'$.DueDate' AS DATE) AS due_date,
    body->>'$.Currency' AS currency,
    try_cast(body->>'$.Total' AS DECIMAL(18, 2)) AS total,
    try_cast(body->>'$.AmountPaid' AS DECIMAL(18, 2)) AS amount_paid,
    try_cast(body->>'$.AmountDue' AS DECIMAL(18, 2)) AS amount_due,
    body->>'$.PaymentStatus' AS payment_status,
    body->>'$.PoNumber' AS po_number,
    coalesce(json_array_length(body->'$.Lines'), 0) AS line_count,
    body->'$.Lines' AS lines,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _version AS version,
    _ts AS collected_at,
    _id AS id,
    body
FROM {crm_order}
QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1 AND NOT _deleted;

-- view: wave_customers_now
CREATE OR REPLACE VIEW wave_customers_now AS
SELECT
    _source_id AS wave_id,
    body->>'$.displayId' AS display_id,
    body->>'$.name' AS name,
    body->>'$.firstName' AS first_name,
    body->>'$.lastName' AS last_name,
    body->>'$.email' AS email,
    body->>'$.phone' AS phone,
    body->>'$.mobile' AS mobile,
    body->>'$.website' AS website,
    body->>'$.currency.code' AS currency,
    body->>'$.address.addressLine1' AS address_line1,
    body->>'$.address.addressLine2' AS address_line2,
    body->>'$.address.postalCode' AS postal_code,
    body->>'$.address.city' AS city,
    body->>'$.address.province.code' AS province,
    body->>'$.address.country.code' AS country,
    try_cast(body->>'$.isArchived' AS BOOLEAN) AS is_archived,
    try_cast(body->>'$.createdAt' AS TIMESTAMP) AS created_at,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _ts AS collected_at,
    _id AS id,
    body
FROM {wave_customer}
QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1 AND NOT _deleted;

-- view: wave_products_now
CREATE OR REPLACE VIEW wave_products_now AS
SELECT
    _source_id AS wave_id,
    body->>'$.name' AS name,
    body->>'$.description' AS description,
    try_cast(body->>'$.unitPrice' AS DECIMAL(18, 5)) AS unit_price,
    try_cast(body->>'$.isArchived' AS BOOLEAN) AS is_archived,
    try_cast(body->>'$.isSold' AS BOOLEAN) AS is_sold,
    try_cast(body->>'$.isBought' AS BOOLEAN) AS is_bought,
    try_cast(body->>'$.createdAt' AS TIMESTAMP) AS created_at,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _ts AS collected_at,
    _id AS id,
    body
FROM {wave_product}
QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1 AND NOT _deleted;

-- view: wave_invoices_now
CREATE OR REPLACE VIEW wave_invoices_now AS
SELECT
    _source_id AS wave_id,
    body->>'$.invoiceNumber' AS invoice_number,
    body->>'$.customer.id' AS customer_wave_id,
    body->>'$.title' AS title,
    body->>'$.status' AS status,
    try_cast(body->>'$.invoiceDate' AS DATE) AS invoice_date,
    try_cast(body->>'$.dueDate' AS DATE) AS due_date,
    body->>'$.currency.code' AS currency,
    try_cast(body->>'$.total.value' AS DECIMAL(18, 2)) AS total,
    try_cast(body->>'$.amountPaid.value' AS DECIMAL(18, 2)) AS amount_paid,
    try_cast(body->>'$.amountDue.value' AS DECIMAL(18, 2)) AS amount_due,
    body->>'$.poNumber' AS po_number,
    coalesce(json_array_length(body->'$.items'), 0) AS item_count,
    body->'$.items' AS items,
    try_cast(body->>'$.createdAt' AS TIMESTAMP) AS created_at,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _ts AS collected_at,
    _id AS id,
    body
FROM {wave_invoice}
QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1 AND NOT _deleted;

-- view: golden_customers
-- The merged (golden) records of the last pass: link and state columns plus one column per field.
CREATE OR REPLACE VIEW golden_customers AS SELECT {golden:global_customer} FROM {global_customer};

-- view: golden_products
CREATE OR REPLACE VIEW golden_products AS SELECT {golden:global_product} FROM {global_product};

-- view: golden_orders
CREATE OR REPLACE VIEW golden_orders AS SELECT {golden:global_order} FROM {global_order};

-- view: record_links
-- Which CRM record and which Wave record each global id stands for, how and when they were linked.
CREATE OR REPLACE VIEW record_links AS
SELECT entity, global_id, crm_id, wave_id, how, linked_at
FROM {links};

-- view: entity_history
-- Every version of every collected entity, valid from when the sync wrote it until the next version.
CREATE OR REPLACE VIEW entity_history AS
WITH versions AS (
    SELECT 'crm_customer' AS dataset, * FROM {crm_customer}
    UNION ALL BY NAME SELECT 'crm_product' AS dataset, * FROM {crm_product}
    UNION ALL BY NAME SELECT 'crm_order' AS dataset, * FROM {crm_order}
    UNION ALL BY NAME SELECT 'wave_customer' AS dataset, * FROM {wave_customer}
    UNION ALL BY NAME SELECT 'wave_product' AS dataset, * FROM {wave_product}
    UNION ALL BY NAME SELECT 'wave_invoice' AS dataset, * FROM {wave_invoice}
)
SELECT
    dataset,
    _id AS id,
    _source_id AS source_id,
    _seq AS seq,
    _deleted AS deleted,
    _ts AS valid_from,
    lead(_ts) OVER (PARTITION BY dataset, _id ORDER BY _seq) AS valid_to,
    try_cast(_modified AS TIMESTAMP) AS modified_at,
    _version AS version,
    _hash AS hash,
    body
FROM versions;

-- view: entity_as_of
-- Table macro: the version of every entity valid at `ts` (deleted = true: it was deleted then).
-- SELECT * FROM entity_as_of(TIMESTAMP '2026-01-01 12:00') WHERE dataset = 'crm_customer';
CREATE OR REPLACE MACRO entity_as_of(ts) AS TABLE
SELECT *
FROM entity_history
WHERE valid_from <= CAST(ts AS TIMESTAMP)
  AND (valid_to IS NULL OR valid_to > CAST(ts AS TIMESTAMP));

-- view: field_conflicts
-- Fields changed on both sides, with both values, the base, the winner and why.
CREATE OR REPLACE VIEW field_conflicts AS
SELECT
    c.entity, c.global_id, l.crm_id, l.wave_id, c.field,
    c.crm_value, c.wave_value, c.base_value, c.winner, c.reason, c.detected_at
FROM {conflicts} AS c
LEFT JOIN {links} AS l ON l.entity = c.entity AND l.global_id = c.global_id;

-- view: failed_records
-- Writes a target system (`system`) refused: the dead letters, with the field, message and attempts.
CREATE OR REPLACE VIEW failed_records AS
SELECT * FROM {dead_letters};

-- view: share_rows
-- Every row of every share table: what the next push would do, per target system.
CREATE OR REPLACE VIEW share_rows AS
WITH rows AS (
    SELECT 'crm' AS target_system, 'customer' AS entity, 'crm_customer_share' AS share_table, * FROM {crm_customer_share}
    UNION ALL BY NAME SELECT 'wave' AS target_system, 'customer' AS entity, 'wave_customer_share' AS share_table, * FROM {wave_customer_share}
    UNION ALL BY NAME SELECT 'crm' AS target_system, 'product' AS entity, 'crm_product_share' AS share_table, * FROM {crm_product_share}
    UNION ALL BY NAME SELECT 'wave' AS target_system, 'product' AS entity, 'wave_product_share' AS share_table, * FROM {wave_product_share}
    UNION ALL BY NAME SELECT 'crm' AS target_system, 'order' AS entity, 'crm_order_share' AS share_table, * FROM {crm_order_share}
    UNION ALL BY NAME SELECT 'wave' AS target_system, 'order' AS entity, 'wave_invoice_share' AS share_table, * FROM {wave_invoice_share}
)
SELECT
    target_system, entity, share_table, global_id, op, target_id, source_id,
    try_cast(changes AS JSON) AS changes, try_cast(before AS JSON) AS before, reason
FROM rows;

-- view: planned_writes
-- Inserts and updates the next push will send.
CREATE OR REPLACE VIEW planned_writes AS
SELECT * FROM share_rows WHERE op IN ('insert', 'update');

-- view: pending_deletes
-- Records deleted in the source system whose counterpart still exists in the target:
-- deletes are never pushed by the sync itself, they wait here for approval.
CREATE OR REPLACE VIEW pending_deletes AS
SELECT * FROM share_rows WHERE op = 'delete';

-- view: waiting_records
-- Records that wait (e.g. an order for a customer not linked yet), with the reason.
CREATE OR REPLACE VIEW waiting_records AS
SELECT * FROM share_rows WHERE op = 'wait';

-- view: sync_log_entries
-- What was written to which system, when, with the values before and after.
CREATE OR REPLACE VIEW sync_log_entries AS
SELECT * FROM {sync_log};

-- view: open_conflicts
-- Field differences waiting for a person (policy `review`, the first sync): both values, the base,
-- when each side last changed. Decide with `crm-wave conflicts resolve ID --take crm|wave|newest`.
CREATE OR REPLACE VIEW open_conflicts AS
SELECT
    q.id, q.entity, q.global_id, l.crm_id, l.wave_id, q.field, q.kind,
    q.crm_value, q.wave_value, q.base_value, q.crm_modified, q.wave_modified, q.detected_at
FROM {conflict_queue} AS q
LEFT JOIN {links} AS l ON l.entity = q.entity AND l.global_id = q.global_id
WHERE q.status = 'open';

-- view: conflict_decisions
-- The conflict queue's history: every item, its status (open, decided, applied, superseded), who decided what, when.
CREATE OR REPLACE VIEW conflict_decisions AS
SELECT * FROM {conflict_queue};
