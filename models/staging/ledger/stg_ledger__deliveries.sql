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
    -- Lines written before reason_detail existed said 'missing_template_variable:<name>'.
    case
        when reason like 'missing_template_variable:%' then 'missing_template_variable'
        else reason
    end as reason,
    coalesce(
        reason_detail,
        case
            when reason like 'missing_template_variable:%'
                then {{ dbt.split_part('reason', "':'", 2) }}
        end
    ) as reason_detail,
    attempt,
    http_status,
    provider_message_id,
    segments,
    subject,
    body,
    {{ dbt.safe_cast('recorded_at', api.Column.translate_type('timestamp')) }} as recorded_at,
    filename as source_file
from source
