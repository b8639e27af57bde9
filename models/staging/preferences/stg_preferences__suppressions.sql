with

source as (

    select * from {{ source('preferences', 'suppressions') }}

),

typed as (

    select
        {{ blank_to_null('suppression_id') }} as suppression_id,
        {{ normalize_code('channel') }} as channel,
        -- matched as the guard compares: emails case-insensitively, phones and tokens as they are
        case
            when {{ normalize_code('channel') }} = 'email' then {{ normalize_code('address') }}
            else {{ blank_to_null('address') }}
        end as address,
        {{ normalize_code('status') }} as suppression_status,
        coalesce({{ normalize_code('scope') }}, 'all') as scope,
        {{ blank_to_null('reason') }} as reason,
        {{ blank_to_null('source') }} as suppression_source,
        {{ utc_timestamp('recorded_at') }} as recorded_at,
        recorded_at as raw_recorded_at,
        filename as source_file,
        -- a provider sends an event again (a retry, a lost answer): it is one change
        row_number() over (partition by suppression_id order by filename) as delivery_number
    from source

)

select
    suppression_id,
    channel,
    address,
    suppression_status,
    scope,
    reason,
    suppression_source,
    recorded_at,
    raw_recorded_at,
    source_file,
    case
        when suppression_id is null then 'missing suppression_id'
        when address is null then 'missing address'
        when channel not in ('email', 'sms', 'push') then 'unknown channel: ' || coalesce(channel, 'null')
        when suppression_status not in ('suppressed', 'lifted') then 'unknown status: ' || coalesce(suppression_status, 'null')
        when scope not in ('all', 'marketing') then 'unknown scope: ' || scope
        when recorded_at is null then 'unparseable recorded_at: ' || coalesce(raw_recorded_at, 'null')
    end as reject_reason
from typed
where delivery_number = 1 or suppression_id is null
