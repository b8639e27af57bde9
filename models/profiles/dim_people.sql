-- The unified profile: one row per person, everything a journey decides on.
with

traits as (

    select * from {{ ref('int_people_traits') }}

),

consents as (

    select * from {{ ref('int_people_consents') }}

),

orders as (

    select * from {{ ref('int_people_orders') }}

),

final as (

    select
        traits.person_id,
        traits.user_id,
        traits.email,
        traits.phone,
        traits.first_name,
        traits.timezone,
        traits.push_token,
        traits.raw_email is not null and traits.email is null as has_invalid_email,
        traits.raw_phone is not null and traits.phone is null as has_invalid_phone,
        coalesce(consents.email_consent, 'none') as email_consent,
        consents.email_consent_at,
        coalesce(consents.sms_consent, 'none') as sms_consent,
        consents.sms_consent_at,
        coalesce(consents.push_consent, 'none') as push_consent,
        consents.push_consent_at,
        coalesce(orders.order_count, 0) as order_count,
        coalesce(orders.revenue, 0) as revenue,
        orders.first_order_at,
        orders.last_order_at,
        traits.first_seen_at,
        traits.last_seen_at
    from traits
    left join consents
        on traits.person_id = consents.person_id
    left join orders
        on traits.person_id = orders.person_id

)

select * from final
