-- What each destination holds for each key, as far as it acknowledged, and how the key's last
-- try went: one row per sync and key ever tried.
with

results as (

    select * from {{ ref('stg_syncs__results') }}

),

tried as (

    select
        *,
        row_number() over (
            partition by sync, sync_key order by recorded_at desc, sync_row_id
        ) as recency
    from results

),

acknowledged as (

    select
        sync,
        sync_key,
        change,
        op,
        payload,
        row_hash,
        recorded_at,
        row_number() over (
            partition by sync, sync_key order by recorded_at desc, sync_row_id
        ) as recency
    from results
    where outcome in ('synced', 'unknown')

),

final as (

    select
        {{ dbt.concat(["t.sync", "':'", "t.sync_key"]) }} as sync_state_id,
        t.sync,
        t.destination,
        t.sync_key,
        case
            when a.sync_key is null then 'never_synced'
            when a.change = 'removed' then 'removed'
            else 'live'
        end as destination_state,
        a.op as synced_op,
        a.payload as synced_payload,
        a.row_hash as synced_row_hash,
        a.recorded_at as synced_at,
        t.outcome as last_outcome,
        t.reason as last_reason,
        t.attempt as last_attempt,
        t.recorded_at as last_tried_at,
        t.outcome not in ('synced', 'unknown') as is_pending
    from tried as t
    left join acknowledged as a
        on a.sync = t.sync and a.sync_key = t.sync_key and a.recency = 1
    where t.recency = 1

)

select
    sync_state_id,
    sync,
    destination,
    sync_key,
    destination_state,
    synced_op,
    synced_payload,
    synced_row_hash,
    synced_at,
    last_outcome,
    last_reason,
    last_attempt,
    last_tried_at,
    is_pending
from final
