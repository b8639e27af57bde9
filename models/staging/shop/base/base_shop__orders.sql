-- Every order export line as landed, each landing file loaded once (macros/landing_files.sql): an
-- incremental run parses only the files that landed since the last one.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}

select
    order_id,
    user_id,
    email,
    total,
    currency,
    status,
    created_at,
    filename as source_file,
    {{ run_batch_stamp() }} as loaded_at
from {{ source('shop', 'orders') }}
where {{ landing_files_not_loaded('shop', 'orders') }}
