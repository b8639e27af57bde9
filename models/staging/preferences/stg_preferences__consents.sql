with

source as (

    select * from {{ source('preferences', 'consents') }}

),

typed as (

    select
        {{ blank_to_null('consent_id') }} as consent_id,
        {{ blank_to_null('user_id') }} as user_id,
        {{ normalize_code('channel') }} as channel,
        coalesce({{ normalize_code('topic') }}, 'marketing') as topic,
        {{ normalize_code('status') }} as consent_status,
        {{ blank_to_null('source') }} as consent_source,
        {{ utc_timestamp('recorded_at') }} as recorded_at,
        recorded_at as raw_recorded_at,
        filename as source_file
    from source

)

select
    *,
    case
        when consent_id is null then 'missing consent_id'
        when user_id is null then 'missing user_id'
        when channel not in ('email', 'sms', 'push', 'in_app', 'webhook') then 'unknown channel: ' || coalesce(channel, 'null')
        when consent_status not in ('subscribed', 'unsubscribed') then 'unknown status: ' || coalesce(consent_status, 'null')
        when recorded_at is null then 'unparseable recorded_at: ' || coalesce(raw_recorded_at, 'null')
    end as reject_reason
from typed
