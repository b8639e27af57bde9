-- Every journey's entries in one table. A new journey adds its audience here.
with

cart_abandonment as (

    select * from {{ ref('audience_cart_abandonment') }}

),

unioned as (

    select
        entry_id,
        journey,
        person_id,
        entry_event_at,
        enters_at,
        exited_at,
        arm
    from cart_abandonment

)

select * from unioned
