-- Each completed order with the person who placed it: by user_id, a guest order by email.
with

orders as (

    select * from {{ ref('stg_shop__orders') }}
    where reject_reason is null and order_status = 'completed'

),

identities as (

    select * from {{ ref('dim_identities') }}

)

select
    orders.order_id,
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
