-- Every Segment call as landed, each landing file loaded once (macros/landing_files.sql): an
-- incremental run parses only the files that landed since the last one.
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail') }}

select
    type,
    {{ adapter.quote('messageId') }},
    event,
    name,
    {{ adapter.quote('userId') }},
    {{ adapter.quote('anonymousId') }},
    {{ adapter.quote('timestamp') }},
    properties,
    traits,
    context,
    {{ adapter.quote('previousId') }},
    {{ adapter.quote('groupId') }},
    {{ adapter.quote('receivedAt') }},
    source,
    filename as source_file,
    {{ run_batch_stamp() }} as loaded_at
from {{ source('segment', 'events') }}
where {{ landing_files_not_loaded('segment', 'events') }}
