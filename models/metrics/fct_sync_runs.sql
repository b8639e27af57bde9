-- One row per sync run: what it sent and how the destination answered.
with

results as (

    select * from {{ ref('stg_syncs__results') }}

),

final as (

    select
        {{ dbt.concat(["run_id", "':'", "sync"]) }} as sync_run_id,
        run_id,
        sync,
        destination,
        min(recorded_at) as first_landed_at,
        max(recorded_at) as last_landed_at,
        cast(sum(case when change = 'added' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_added,
        cast(sum(case when change = 'changed' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_changed,
        cast(sum(case when change = 'removed' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_removed,
        cast(sum(case when outcome = 'synced' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_synced,
        cast(sum(case when outcome in ('rejected', 'gave_up') then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_rejected,
        cast(sum(case when outcome = 'gave_up' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_given_up,
        cast(sum(case when outcome = 'failed' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_failed,
        cast(sum(case when outcome = 'unknown' then 1 else 0 end) as {{ dbt.type_bigint() }}) as rows_unknown
    from results
    group by run_id, sync, destination

)

select
    sync_run_id,
    run_id,
    sync,
    destination,
    first_landed_at,
    last_landed_at,
    rows_added,
    rows_changed,
    rows_removed,
    rows_synced,
    rows_rejected,
    rows_given_up,
    rows_failed,
    rows_unknown
from final
