-- One row per identifier with the person it belongs to.
-- A device that several user_ids logged in on goes to the one who logged in first; the full
-- identifier graph with shared-device guards replaces this rule.
with

events as (

    select * from {{ ref('stg_segment__events') }}
    where reject_reason is null

),

edges as (

    select * from {{ ref('int_identity_edges') }}

),

known_users as (

    select user_id, min(occurred_at) as first_seen_at
    from events
    where user_id is not null
    group by user_id

),

device_owner as (

    select anonymous_id, user_id, first_linked_at
    from (
        select
            anonymous_id,
            user_id,
            first_linked_at,
            row_number() over (
                partition by anonymous_id order by first_linked_at, user_id
            ) as claim_order
        from edges
    ) claims
    where claim_order = 1

),

anonymous_ids as (

    select anonymous_id, min(occurred_at) as first_seen_at
    from events
    where anonymous_id is not null
    group by anonymous_id

),

final as (

    select
        'user_id' as identifier_type,
        user_id as identifier_value,
        {{ person_id('user_id', 'user_id') }} as person_id,
        first_seen_at
    from known_users

    union all

    select
        'anonymous_id' as identifier_type,
        anonymous_ids.anonymous_id as identifier_value,
        case
            when device_owner.user_id is not null
                then {{ person_id('user_id', 'device_owner.user_id') }}
            else {{ person_id('anonymous_id', 'anonymous_ids.anonymous_id') }}
        end as person_id,
        anonymous_ids.first_seen_at
    from anonymous_ids
    left join device_owner
        on anonymous_ids.anonymous_id = device_owner.anonymous_id

)

select * from final
