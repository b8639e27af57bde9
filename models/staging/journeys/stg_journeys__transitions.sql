with

source as (

    select * from {{ source('journeys', 'transitions') }}

)

select
    {{ dbt.concat(["entry_id", "':'", "cast(seq as " ~ dbt.type_string() ~ ")"]) }} as transition_id,
    journey,
    -- files from before versions were recorded have no such column
    {{ column_or_null(source('journeys', 'transitions'), 'journey_version', dbt.type_string()) }}
        as journey_version,
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
