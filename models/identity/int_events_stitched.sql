-- Valid events with the person they belong to: user_id wins, else the stitched anonymous id.
-- Incremental: a run stitches the events loaded since the last one, and again those whose
-- user_id or anonymous_id changed person in this run's identity batch (a merge or a split).
{#- A table built before stitched_at existed gains the column: its rows, stamped null, are all
    stitched again once. #}
{#- A redelivery that won (an earlier timestamp) but is unusable replaces a usable call in staging:
    its event leaves this table too (delete+insert only replaces the rows it writes). #}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='event_id',
          on_schema_change='append_new_columns',
          post_hook="{{ delete_rows(this, 'deleted.event_id in (select event_id from '
                    ~ ref('stg_segment__events') ~ ' where reject_reason is not null)') }}") }}
with

{%- if is_incremental() %}

restitched as (

    -- identifiers dim_identities wrote since this model last ran
    select identifier_type, identifier_value from {{ ref('dim_identities') }} as identities
    where identities.processed_at > {{ latest_in_this('max(stitched_at)', 'stitched_at') }}
        and identities.identifier_type in ('user_id', 'anonymous_id')

),

{%- endif %}

events as (

    select * from {{ ref('stg_segment__events') }} as events
    where events.reject_reason is null
    {%- if is_incremental() %}
        and (
            {{ landing_new_batch('events') }}
            or events.user_id in (
                select identifier_value from restitched where identifier_type = 'user_id'
            )
            or events.anonymous_id in (
                select identifier_value from restitched where identifier_type = 'anonymous_id'
            )
        )
    {%- endif %}

),

identities as (

    select * from {{ ref('dim_identities') }}

),

stitched as (

    select
        coalesce(by_user.person_id, by_device.person_id) as person_id,
        events.*,
        {{ run_batch_stamp() }} as stitched_at
    from events
    left join identities as by_user
        on by_user.identifier_type = 'user_id'
        and events.user_id = by_user.identifier_value
    left join identities as by_device
        on by_device.identifier_type = 'anonymous_id'
        and events.anonymous_id = by_device.identifier_value

)

select * from stitched
