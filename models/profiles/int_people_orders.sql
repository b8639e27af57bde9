-- Order history per person: orders find their person by user_id, guest orders by email.
with

orders as (

    select * from {{ ref('stg_shop__orders') }}
    where reject_reason is null and order_status = 'completed'

),

identities as (

    select * from {{ ref('dim_identities') }}

),

attributed as (

    select
        coalesce(by_user.person_id, by_email.person_id) as person_id,
        orders.order_total,
        orders.ordered_at
    from orders
    left join identities as by_user
        on by_user.identifier_type = '{{ identity_config().anchor_type }}'
        and orders.user_id = by_user.identifier_value
    left join identities as by_email
        on by_email.identifier_type = 'email'
        and orders.email = by_email.identifier_value

),

per_person as (

    select
        person_id,
        count(*) as order_count,
        sum(order_total) as revenue,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from attributed
    where person_id is not null
    group by person_id

)

select * from per_person
