{#- Person-scoped incremental profiles. An incremental profile model stamps its rows with
    profiled_at (this run's batch stamp); each run it recomputes only the people whose inputs
    changed since its newest stamp, read from the batch stamps upstream writes:
    - dim_identities.processed_at: identifiers that joined, left or moved between people (the
      person they went to and, through previous_person_id, the person they left: a merged-away
      id is deleted, a split person recomputed);
    - int_events_stitched.stitched_at (with `events=true`): events loaded, or stitched again to
      a new person, since.
    The model's pre_hook deletes those people (delete_touched_people) and its select
    recomputes them from their whole history (person_touched): an `append` over the deleted
    rows, in the run's transaction. A full build recomputes everyone.
    The other profile models stay full tables: their inputs carry no batch stamp (the ledger,
    consents and feedback are append logs read as views), they rank across all people (RFM,
    dim_people's "as of"), or they cost no more in full (benchmarks/profiles_incremental.py).
    A column added to a person-scoped model reaches each row when its person is next touched,
    as with any dbt incremental model (on_schema_change append_new_columns); `dbt run
    --full-refresh -s <model>` fills it for everyone. -#}

{#- The people to recompute, as a select of person_id. -#}
{% macro people_touched(events=false) -%}
{%- set since = latest_in_this('max(profiled_at)', 'profiled_at') -%}
select touched_identities.person_id
from {{ ref('dim_identities') }} as touched_identities
where touched_identities.processed_at > {{ since }}
union
select touched_identities.previous_person_id
from {{ ref('dim_identities') }} as touched_identities
where touched_identities.processed_at > {{ since }}
    and touched_identities.previous_person_id is not null
{%- if events %}
union
select touched_events.person_id
from {{ ref('int_events_stitched') }} as touched_events
where touched_events.stitched_at > {{ since }}
    and touched_events.person_id is not null
{%- endif %}
{%- endmacro %}

{#- A filter keeping the rows of `column`'s people to recompute; every row in a full build. -#}
{% macro person_touched(column, events=false) -%}
{%- if is_incremental() -%}
{{ column }} in ({{ people_touched(events) }})
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{#- The pre_hook: the rows of the people this run recomputes go (nothing in a full build). -#}
{% macro delete_touched_people(events=false) -%}
{%- if is_incremental() -%}
delete from {{ this }} where {{ person_touched('person_id', events) }}
{%- endif -%}
{%- endmacro %}

{#- The config of a person-scoped incremental profile model. dim_identities is read by the
    touched people only in incremental runs, where dbt cannot see the ref: each model names it
    in a depends_on comment. -#}
{% macro person_scoped_incremental(events=false) -%}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_touched_people(events=" ~ (events | string | lower) ~ ") }}",
) }}
{%- endmacro %}
