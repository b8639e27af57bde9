with

source as (

    select * from {{ source('journeys', 'transitions') }}

)

select
    {{ dbt.concat(["entry_id", "':'", "cast(seq as " ~ dbt.type_string() ~ ")"]) }} as transition_id,
    journey,
    -- older files have none: the folder's placeholder always has every column (it is rewritten
    -- by the pipeline, the CLI and `switchyard prepare` before dbt runs: ensure_layout)
    journey_version,
    entry_id,
    person_id,
    seq,
    from_node,
    node,
    reached_at,
    next_at,
    entered_at,
    arm,
    reason,
    detail,
    properties as entry_properties,
    run_id,
    recorded_at
from source
