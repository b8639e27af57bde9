with

source as (

    select * from {{ source('ledger', 'deliveries') }}

)

select
    send_key,
    run_id,
    journey,
    step,
    person_id,
    entry_id,
    channel,
    recipient,
    status as delivery_status,
    reason,
    reason_detail,
    attempt,
    http_status,
    provider_message_id,
    subject,
    body,
    {{ dbt.safe_cast('recorded_at', api.Column.translate_type('timestamp')) }} as recorded_at,
    filename as source_file
from source
