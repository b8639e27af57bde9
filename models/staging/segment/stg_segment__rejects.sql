-- What the collector refused, with its reason: kept, never dropped (fct_rejected_rows lists it).
with

source as (

    select * from {{ source('segment', 'rejects') }}

)

select
    {{ utc_timestamp('rejected_at') }} as rejected_at,
    source as intake_source,
    message_id,
    coalesce(reason, 'rejected by the collector') as reject_reason,
    payload,
    filename as source_file
from source
