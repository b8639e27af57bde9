with

source as (

    select * from {{ source('syncs', 'results') }}

)

select
    {{ dbt.concat(["run_id", "':'", "sync", "':'", "key"]) }} as sync_row_id,
    sync,
    destination,
    key as sync_key,
    change,
    op,
    row_hash,
    payload,
    outcome,
    reason,
    attempt,
    run_id,
    recorded_at
from source
