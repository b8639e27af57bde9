-- Incremental: each run types the calls loaded since the last (base_segment__events) and merges
-- them by messageId with the calls already here, so a run's cost follows the new files.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='event_id',
          on_schema_change='fail') }}
{%- set q = adapter.quote %}
{%- set columns = 'type, ' ~ q('messageId') ~ ', event, name, ' ~ q('userId') ~ ', ' ~ q('anonymousId') ~ ', '
    ~ q('timestamp') ~ ', properties, traits, context, ' ~ q('previousId') ~ ', ' ~ q('groupId') ~ ', '
    ~ q('receivedAt') ~ ', source' %}
with

source as (

    select {{ columns }}, source_file, loaded_at from {{ ref('base_segment__events') }} as base
    where {{ landing_new_batch('base') }}
    {%- if var('cdp_warehouse')['enabled'] | as_bool %}
    -- and the CDP's own warehouse tables, read in place (vars.cdp_warehouse): the calls not here
    -- yet (one without a messageId is taken by a full build only)
    union all
    select {{ columns }}, filename as source_file, {{ run_batch_stamp() }} as loaded_at
    from {{ ref('stg_cdp__events') }}
    {%- if is_incremental() %}
    where {{ q('messageId') }} is not null
        and {{ q('messageId') }} not in (select event_id from {{ this }} where event_id is not null)
    {%- endif %}
    {%- endif %}

),

typed as (

    select
        {{ q('messageId') }} as event_id,
        lower(type) as event_type,
        case
            when lower(type) = 'track' then event
            when lower(type) in ('page', 'screen') then name
        end as event_name,
        {{ blank_to_null(q('userId')) }} as user_id,
        -- An alias merges previousId (usually the anonymousId the person had before signing
        -- in) into userId: as the alias row's anonymous id, identity links the two as any
        -- event carrying both. (An earlier userId as previousId is linked as an anonymous id
        -- of that value, not merged with that user id's own events.)
        case
            when lower(type) = 'alias' then {{ blank_to_null(q('previousId')) }}
            else {{ blank_to_null(q('anonymousId')) }}
        end as anonymous_id,
        {{ blank_to_null(q('previousId')) }} as previous_id,
        {{ blank_to_null(q('groupId')) }} as group_id,
        {{ utc_timestamp(q('receivedAt')) }} as received_at,
        source as intake_source,
        {{ utc_timestamp(q('timestamp')) }} as occurred_at,
        {{ q('timestamp') }} as raw_timestamp,
        properties,
        traits,
        {{ json_text('traits', '$.email') }} as trait_email,
        {{ json_text('traits', '$.phone') }} as trait_phone,
        {{ json_text('context', '$.device.id') }} as device_id,
        {{ json_text('context', '$.device.token') }} as push_token,
        {{ json_text('context', '$.timezone') }} as timezone,
        source_file,
        loaded_at
    from source

),

checked as (

    select
        *,
        case
            when event_id is null then 'missing messageId'
            when event_type not in ('track', 'identify', 'page', 'screen', 'alias', 'group')
                then 'unknown call type'
            when occurred_at is null then 'unparseable timestamp: ' || coalesce(raw_timestamp, 'null')
            when user_id is null and anonymous_id is null then 'neither userId nor anonymousId'
            when event_type = 'track' and event_name is null then 'track call without event name'
            when event_type = 'alias' and (user_id is null or previous_id is null)
                then 'alias call without userId and previousId'
            when event_type = 'group' and group_id is null then 'group call without groupId'
        end as reject_reason
    from typed

),

{%- set kept = 'event_id, event_type, event_name, user_id, anonymous_id, previous_id, group_id, '
    ~ 'occurred_at, received_at, intake_source, raw_timestamp, properties, traits, trait_email, '
    ~ 'trait_phone, device_id, push_token, timezone, source_file, loaded_at, reject_reason' %}

candidates as (

    select {{ kept }} from checked
    {%- if is_incremental() %}
    -- a messageId delivered before competes with its new delivery
    union all
    select {{ kept }} from {{ this }}
    where event_id in (select event_id from checked where event_id is not null)
    {%- endif %}

),

ranked as (

    select
        *,
        row_number() over (partition by event_id order by occurred_at, source_file) as delivery_number
    from candidates

)

-- An SDK retry delivers the same messageId again: keep the first delivery.
select {{ kept }}
from ranked
where delivery_number = 1 or event_id is null
