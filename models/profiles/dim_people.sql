-- The unified profile: one row per person, everything a journey or an analyst decides on.
-- "As of" is the latest activity in the data, so a rebuild of the same data gives the same row.
with

people as (

    select * from {{ ref('int_people_identifiers') }}

),

traits as (

    select * from {{ ref('int_people_traits') }}

),

consents as (

    select * from {{ ref('int_people_consents') }}

),

orders as (

    select * from {{ ref('int_people_orders') }}

),

rfm as (

    select * from {{ ref('int_people_rfm') }}

),

messages as (

    select * from {{ ref('int_people_messages') }}

),

activity as (

    select * from {{ ref('int_people_activity') }}

),

dead_push_tokens as (

    -- Tokens FCM said are dead (unregistered, not a valid token): never used again.
    select distinct recipient as push_token
    from {{ ref('stg_ledger__deliveries') }}
    where channel = 'push' and delivery_status = 'failed' and reason = 'dead_push_token'

),

as_of as (

    select max(last_seen_at) as as_of from people

),

joined as (

    select
        people.person_id,
        people.user_id,
        coalesce(traits.email, people.identifier_email) as email,
        traits.email_at as email_updated_at,
        traits.phone,
        traits.phone_at as phone_updated_at,
        traits.first_name,
        traits.first_name_at as first_name_updated_at,
        traits.timezone,
        case when dead_push_tokens.push_token is null then traits.push_token end as push_token,
        dead_push_tokens.push_token is not null as has_dead_push_token,
        coalesce(traits.raw_email is not null and traits.email is null, false) as has_invalid_email,
        coalesce(traits.raw_phone is not null and traits.phone is null, false) as has_invalid_phone,
        {% for channel in ['email', 'sms', 'push'] %}
        coalesce(consents.{{ channel }}_consent, 'none') as {{ channel }}_consent,
        consents.{{ channel }}_consent_at,
        consents.{{ channel }}_consent_source,
        {% endfor %}
        coalesce(orders.order_count, 0) as order_count,
        coalesce(orders.revenue, 0) as revenue,
        orders.first_order_at,
        orders.last_order_at,
        rfm.recency_score,
        rfm.frequency_score,
        rfm.monetary_score,
        coalesce(rfm.rfm_segment, 'prospect') as rfm_segment,
        coalesce(messages.messages_sent, 0) as messages_sent,
        messages.last_email_sent_at,
        messages.last_sms_sent_at,
        messages.last_push_sent_at,
        coalesce(messages.opens, 0) as opens,
        coalesce(messages.clicks, 0) as clicks,
        messages.last_engaged_at,
        messages.last_engaged_channel,
        messages.most_engaged_channel,
        messages.usual_active_hour_utc,
        activity.signed_up_at,
        activity.profile_completed_at,
        activity.profile_completed_at is not null as profile_completed,
        activity.app_installed_at,
        activity.last_app_active_at,
        {{ dbt.datediff('activity.last_app_active_at', 'as_of.as_of', 'day') }} as days_since_app_active,
        people.identifier_count,
        people.identifiers,
        people.first_seen_at,
        people.last_seen_at,
        {{ dbt.datediff('people.last_seen_at', 'as_of.as_of', 'day') }} as days_since_last_seen,
        {{ dbt.datediff('orders.last_order_at', 'as_of.as_of', 'day') }} as days_since_last_order
    from people
    cross join as_of
    left join traits
        on people.person_id = traits.person_id
    left join consents
        on people.person_id = consents.person_id
    left join orders
        on people.person_id = orders.person_id
    left join rfm
        on people.person_id = rfm.person_id
    left join messages
        on people.person_id = messages.person_id
    left join activity
        on people.person_id = activity.person_id
    left join dead_push_tokens
        on traits.push_token = dead_push_tokens.push_token

),

scored as (

    select
        *,
        -- Preferred channel: where they engage most, if we may still use it; else the first
        -- channel they consented to and can be reached on.
        case
            when most_engaged_channel = 'email' and email_consent = 'subscribed' and email is not null then 'email'
            when most_engaged_channel = 'sms' and sms_consent = 'subscribed' and phone is not null then 'sms'
            when most_engaged_channel = 'push' and push_consent = 'subscribed' and push_token is not null then 'push'
            when email_consent = 'subscribed' and email is not null then 'email'
            when push_consent = 'subscribed' and push_token is not null then 'push'
            when sms_consent = 'subscribed' and phone is not null then 'sms'
        end as preferred_channel,
        -- Churn risk, 0-100, a transparent rule (see _profiles__models.yml):
        cast(round(
            50.0 * (case when days_since_last_seen > 90 then 90 else days_since_last_seen end) / 90
            + case when order_count > 0 and days_since_last_order > 90 then 25 else 0 end
            + case when messages_sent >= 3 and opens + clicks = 0 then 15 else 0 end
            + case when email_consent <> 'subscribed' and sms_consent <> 'subscribed'
                    and push_consent <> 'subscribed' then 10 else 0 end
        , 0) as integer) as churn_risk_score
    from joined

),

final as (

    select
        *,
        case
            when churn_risk_score >= 60 then 'high'
            when churn_risk_score >= 30 then 'medium'
            else 'low'
        end as churn_risk
    from scored

)

select * from final
