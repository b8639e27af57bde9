-- Every anonymous id a known user_id showed up with: the edges identity stitching follows.
with

events as (

    select * from {{ ref('stg_segment__events') }}
    where reject_reason is null

),

edges as (

    select
        anonymous_id,
        user_id,
        min(occurred_at) as first_linked_at,
        max(occurred_at) as last_linked_at,
        count(*) as event_count
    from events
    where anonymous_id is not null and user_id is not null
    group by anonymous_id, user_id

)

select * from edges
