-- People who have not opened the app or logged in for 30 to 60 days: the re-engagement
-- journey's audience, entered every morning (meta.journey in _audiences__models.yml).
with

people as (

    select * from {{ ref('dim_people') }}

)

select
    person_id,
    user_id,
    last_app_active_at,
    days_since_app_active,
    churn_risk_score,
    revenue
from people
where days_since_app_active between 30 and 60
