-- Source rows that never reached the identity graph: they arrived after the incremental window
-- (vars.identity.lookback_hours) had moved past them. Nothing merges on them until a rebuild:
-- dbt build --full-refresh --select path:models/identity
{{ config(severity='warn') }}

select
    identifier_values.source_model,
    count(*) as unprocessed_rows,
    min(identifier_values.arrived_at) as earliest_arrived_at
from {{ ref('int_identifier_values') }} as identifier_values
left join {{ ref('int_identifier_occurrences') }} as occurrences
    on identifier_values.occurrence_id = occurrences.occurrence_id
    and identifier_values.identifier_type = occurrences.identifier_type
where occurrences.occurrence_id is null
group by identifier_values.source_model
