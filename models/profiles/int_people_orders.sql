-- Order history per person.
with

orders as (

    select * from {{ ref('stg_shop__orders') }}
    where reject_reason is null and order_status = 'completed'

),

identities as (

    select * from {{ ref('dim_identities') }}
    where identifier_type = 'user_id'

),

per_person as (

    select
        identities.person_id,
        count(*) as order_count,
        sum(orders.order_total) as revenue,
        min(orders.ordered_at) as first_order_at,
        max(orders.ordered_at) as last_order_at
    from orders
    inner join identities
        on orders.user_id = identities.identifier_value
    group by identities.person_id

)

select * from per_person
