-- Valid events with the person they belong to: user_id wins, else the stitched anonymous id.
with

events as (

    select * from {{ ref('stg_segment__events') }}
    where reject_reason is null

),

identities as (

    select * from {{ ref('dim_identities') }}

),

stitched as (

    select
        coalesce(by_user.person_id, by_device.person_id) as person_id,
        events.*
    from events
    left join identities as by_user
        on by_user.identifier_type = 'user_id'
        and events.user_id = by_user.identifier_value
    left join identities as by_device
        on by_device.identifier_type = 'anonymous_id'
        and events.anonymous_id = by_device.identifier_value

)

select * from stitched
