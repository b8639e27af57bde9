-- App lifecycle per person: sign-up, profile completion, install and last app activity, for the
-- welcome and re-engagement journeys.
with

events as (

    select person_id, event_name, occurred_at
    from {{ ref('int_events_stitched') }}
    where event_type = 'track'
        and person_id is not null
        and event_name in ('signed_up', 'profile_completed', 'app_installed', 'app_opened',
                           'logged_in')

)

select
    person_id,
    min(case when event_name = 'signed_up' then occurred_at end) as signed_up_at,
    min(case when event_name = 'profile_completed' then occurred_at end) as profile_completed_at,
    min(case when event_name = 'app_installed' then occurred_at end) as app_installed_at,
    max(case when event_name in ('app_opened', 'logged_in') then occurred_at end)
        as last_app_active_at
from events
group by person_id
