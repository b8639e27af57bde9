-- Source rows that never reached the identity graph: they arrived after the incremental window
-- (vars.identity.lookback_hours) had moved past them. Nothing merges on them until a rebuild:
-- dbt build --full-refresh --select path:models/identity
-- Every source row becomes exactly one occurrence, so when each source's counts agree there is
-- nothing to look for and the row-by-row comparison (seconds at millions of rows) is skipped.
-- Blind spot of that shortcut: a source that deleted as many processed rows as arrived late.
{{ config(severity='warn') }}
{%- set values_relation = ref('int_identifier_values') %}
{%- set occurrences_relation = ref('int_identifier_occurrences') %}
{%- set compare = true %}
{%- if execute %}
{%- set counts_sql -%}
    with source_counts as (
        select source_model, count(*) as row_count
        from {{ values_relation }}
        group by source_model
    ),
    processed_counts as (
        select source_model, count(*) as row_count
        from {{ occurrences_relation }}
        group by source_model
    )
    select count(*)
    from source_counts
    full outer join processed_counts
        on source_counts.source_model = processed_counts.source_model
    where source_counts.row_count is null
        or processed_counts.row_count is null
        or source_counts.row_count <> processed_counts.row_count
{%- endset %}
{%- set compare = run_query(counts_sql).columns[0].values()[0] > 0 %}
{%- endif %}

select
    identifier_values.source_model,
    count(*) as unprocessed_rows,
    min(identifier_values.arrived_at) as earliest_arrived_at
from {{ values_relation }} as identifier_values
left join {{ occurrences_relation }} as occurrences
    on identifier_values.occurrence_id = occurrences.occurrence_id
    and identifier_values.identifier_type = occurrences.identifier_type
where occurrences.occurrence_id is null
    {%- if not compare %}
    and 1 = 0
    {%- endif %}
group by identifier_values.source_model
