-- Order history per person.
with

orders as (

    select * from {{ ref('int_orders_attributed') }}
    where person_id is not null

),

per_person as (

    select
        person_id,
        count(*) as order_count,
        sum(order_total) as revenue,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from orders
    group by person_id

)

select * from per_person
