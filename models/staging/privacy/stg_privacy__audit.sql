-- The privacy audit lines, typed: a view (the lines are few, and always read whole). A line that
-- cannot be used (cut short by a killed writer, or missing what every line has) keeps a
-- reject_reason, listed in fct_rejected_rows, instead of being dropped.
with

source as (

    select * from {{ source('privacy', 'audit') }}

),

typed as (

    select
        request_id,
        kind,
        event,
        store,
        coalesce(files, 0) as files,
        coalesce(rows_removed, 0) as rows_removed,
        coalesce(rows_redacted, 0) as rows_redacted,
        {{ utc_timestamp('recorded_at') }} as recorded_at,
        source.recorded_at as raw_recorded_at,
        filename as source_file
    from source

)

select
    request_id,
    kind,
    event,
    store,
    files,
    rows_removed,
    rows_redacted,
    recorded_at,
    source_file,
    case
        when {{ unreadable_line(['request_id', 'kind', 'event', 'raw_recorded_at']) }}
            then {{ unreadable_line_reason() }}
        when request_id is null then 'missing request_id'
        when kind is null or kind not in ('forget', 'retention')
            then 'unknown kind: ' || coalesce(kind, 'null')
        when event is null or event not in ('accepted', 'stage', 'completed', 'refused')
            then 'unknown event: ' || coalesce(event, 'null')
        when recorded_at is null then 'unparseable recorded_at: ' || coalesce(raw_recorded_at, 'null')
    end as reject_reason
from typed
