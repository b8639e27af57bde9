{%- set columns = [
    'send_key', 'run_id', 'journey', 'step', 'person_id', 'entry_id', 'channel', 'recipient',
    'status', 'reason', 'reason_detail', 'attempt', 'http_status', 'provider_message_id',
    'segments', 'subject', 'body', 'recorded_at'
] -%}

with

run_files as (

    select *, {{ dbt.split_part('filename', "'/'", -1) }} as file_name
    from {{ source('ledger', 'deliveries') }}

),

compacted as (

    select * from {{ source('ledger', 'deliveries_compacted') }}

),

source as (

    -- A run file's lines are read from it until a compaction has taken them, then from there:
    -- each line once, wherever it is.
    -- A line without a send key is listed in stg_ledger__rejects, not here: one cut short by a
    -- kill (a cut attempted line's request never went out, its batch fsynced before its
    -- requests; a cut outcome line leaves its attempt unknown, which the next run settles), or
    -- a whole line without one (not one our writer makes).
    select {{ columns | join(', ') }}, file_name as source_file
    from run_files
    where file_name not in (select source_file from compacted)
        and send_key is not null

    union all

    select {{ columns | join(', ') }}, source_file
    from compacted
    where send_key is not null

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
    -- Older lines said 'missing_template_variable', before reason_detail existed with the
    -- name after a colon ('missing_template_variable:<name>').
    case
        when reason like 'missing_template_variable%' then 'missing_variable'
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
    {{ redact_link_tokens('body') }} as body,
    {{ utc_timestamp('recorded_at') }} as recorded_at,
    source_file
from source
