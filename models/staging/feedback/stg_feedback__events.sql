with

source as (

    select * from {{ source('feedback', 'events') }}

),

typed as (

    select
        event_id,
        send_key,
        lower(provider) as provider,
        lower(channel) as channel,
        lower(event) as feedback_event,
        {{ utc_timestamp('occurred_at') }} as occurred_at,
        occurred_at as raw_occurred_at,
        filename as source_file,
        row_number() over (partition by event_id order by filename) as delivery_number
    from source

)

select
    event_id,
    send_key,
    provider,
    channel,
    feedback_event,
    occurred_at,
    source_file,
    case
        when {{ unreadable_line(['event_id', 'send_key', 'provider', 'channel', 'feedback_event', 'raw_occurred_at']) }}
            then {{ unreadable_line_reason() }}
        when event_id is null then 'missing event_id'
        when send_key is null then 'missing send_key'
        when feedback_event not in ('delivered', 'open', 'click', 'bounce', 'dropped',
                                    'spamreport', 'unsubscribe', 'failed', 'undelivered')
            then 'unknown event: ' || coalesce(feedback_event, 'null')
        when occurred_at is null then 'unparseable occurred_at: ' || coalesce(raw_occurred_at, 'null')
    end as reject_reason
from typed
where delivery_number = 1 or event_id is null
