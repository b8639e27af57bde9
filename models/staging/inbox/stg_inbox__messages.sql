with

source as (

    select * from {{ source('inbox', 'messages') }}

),

typed as (

    select
        send_key,
        user_id,
        title,
        {{ redact_link_tokens('body') }} as body,
        journey,
        step,
        {{ utc_timestamp('created_at') }} as created_at,
        created_at as raw_created_at,
        filename as source_file,
        -- written again under the same key (sent once more): the first line is the message
        row_number() over (partition by send_key order by created_at, filename) as copy_number
    from source

)

select
    send_key,
    user_id,
    title,
    body,
    journey,
    step,
    created_at,
    source_file,
    case
        when {{ unreadable_line(['send_key', 'user_id', 'title', 'body', 'journey', 'step', 'raw_created_at']) }}
            then {{ unreadable_line_reason() }}
        when send_key is null then 'missing send_key'
        when user_id is null then 'missing user_id'
        when created_at is null then 'unparseable created_at: ' || coalesce(raw_created_at, 'null')
    end as reject_reason
from typed
where copy_number = 1 or send_key is null
