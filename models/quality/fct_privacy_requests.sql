-- One row per deletion request and per retention run: when it was asked, when it completed,
-- what it removed. The audit for "did we forget them, and when", without personal data.
with

audit as (

    select * from {{ ref('stg_privacy__audit') }}
    where reject_reason is null

),

requests as (

    select
        request_id,
        kind,
        min(recorded_at) as first_recorded_at,
        min(case when event = 'accepted' then recorded_at end) as accepted_at,
        max(case when event = 'completed' then recorded_at end) as completed_at,
        max(case when event = 'refused' then recorded_at end) as refused_at,
        max(case when event = 'stage' then recorded_at end) as last_stage_at,
        count(distinct case when event = 'stage' then store end) as stores_changed,
        sum(case when event = 'stage' then files else 0 end) as files_rewritten,
        sum(case when event = 'stage' then rows_removed else 0 end) as rows_removed,
        sum(case when event = 'stage' then rows_redacted else 0 end) as rows_redacted,
        sum(case when event = 'stage' then 1 else 0 end) as stage_rows
    from audit
    group by request_id, kind

)

select
    request_id,
    kind,
    coalesce(accepted_at, first_recorded_at) as requested_at,
    completed_at,
    case
        when refused_at is not null and (completed_at is null or completed_at < refused_at)
            then 'refused'
        -- done again after a later stage (a request forgotten again) counts from its new end
        when completed_at is not null and (last_stage_at is null or completed_at >= last_stage_at)
            then 'completed'
        when stage_rows = 0 then 'queued'
        else 'in_progress'
    end as status,
    case
        when completed_at is not null
            then {{ dbt.datediff('coalesce(accepted_at, first_recorded_at)', 'completed_at', 'hour') }}
    end as hours_to_complete,
    stores_changed,
    files_rewritten,
    rows_removed,
    rows_redacted
from requests
