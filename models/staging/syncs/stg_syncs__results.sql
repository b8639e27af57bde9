with

source as (

    select * from {{ source('syncs', 'results') }}

),

answered as (

    select distinct run_id, sync, key
    from source
    where outcome <> 'attempted'

),

-- An `attempted` row (landed before events a platform would record twice are sent) stands for
-- the row's outcome only when its run landed no answer for the key: then it reads as unknown.
resolved as (

    select
        run_id, sync, destination, key, change, op, row_hash, payload, outcome, reason, attempt,
        recorded_at
    from source
    where outcome <> 'attempted'

    union all

    select
        s.run_id, s.sync, s.destination, s.key, s.change, s.op, s.row_hash, s.payload,
        'unknown' as outcome,
        -- the words of activations/syncs/results.py UNANSWERED
        'sent, and the run stopped before its answer was landed: not sent again' as reason,
        s.attempt, s.recorded_at
    from source as s
    left join answered as a
        on a.run_id = s.run_id and a.sync = s.sync and a.key = s.key
    where s.outcome = 'attempted' and a.key is null

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
from resolved
