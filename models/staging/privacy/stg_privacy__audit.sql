-- The privacy audit lines, typed: a view (the lines are few, and always read whole).
with

source as (

    select * from {{ source('privacy', 'audit') }}

)

select
    request_id,
    kind,
    event,
    store,
    coalesce(files, 0) as files,
    coalesce(rows_removed, 0) as rows_removed,
    coalesce(rows_redacted, 0) as rows_redacted,
    {{ utc_timestamp('recorded_at') }} as recorded_at,
    filename as source_file
from source
where request_id is not null
