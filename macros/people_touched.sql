{#- Person-scoped incremental profiles. An incremental profile model stamps its rows with
    profiled_at (this run's batch stamp); each run it recomputes only the people whose inputs
    changed since its newest stamp, read from the batch stamps upstream writes:
    - dim_identities.processed_at: the people holding identifiers that joined or moved, and
      everyone else in a person an identifier left (identity stamps every member of a person it
      changes: a split person is recomputed);
    - int_events_stitched.stitched_at (with `events=true`): events loaded, or stitched again to
      a new person, since.
    The model's pre_hook deletes those people, and any person dim_identities no longer holds (a
    merged-away id, however many identity runs ago: delete_touched_people); its select
    recomputes them from their whole history (person_touched): an `append` over the deleted
    rows, in the run's transaction. A full build recomputes everyone.
    Not seen: an event a redelivery of its messageId removes or moves to someone else (staging
    keeps the earliest copy) leaves its old person's traits as they were, until that person is
    touched again; identity's own last_seen_at keeps it too. Only a --full-refresh of identity
    and the profiles agrees with a rebuild then.
    The other profile models stay full tables: their inputs carry no batch stamp (the ledger,
    consents and feedback are append logs read as views) or they rank across all people (RFM,
    dim_people's "as of"); benchmarks/profiles_incremental.py measures both.
    A column added to a person-scoped model, or a change to how it computes one, reaches each
    row only when its person is next touched, as with any dbt incremental model
    (on_schema_change append_new_columns): run `dbt run --full-refresh -s int_people_identifiers
    int_people_traits` after such a change. -#}

{#- The people to recompute, as a select of person_id. -#}
{% macro people_touched(events=false) -%}
{%- set since = latest_in_this('max(profiled_at)', 'profiled_at') -%}
select touched_identities.person_id
from {{ ref('dim_identities') }} as touched_identities
where touched_identities.processed_at > {{ since }}
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

{#- The pre_hook: the rows of the people this run recomputes go, and those of anyone no longer
    in dim_identities (nothing in a full build). -#}
{% macro delete_touched_people(events=false) -%}
{%- if is_incremental() -%}
{%- set condition -%}
{{ person_touched('profiled.person_id', events) }}
    or not exists (
        select 1 from {{ ref('dim_identities') }} as held
        where held.person_id = profiled.person_id
    )
{%- endset -%}
{{ delete_rows(this, condition, alias='profiled') }}
{%- endif -%}
{%- endmacro %}

{#- The config of a person-scoped incremental profile model. dim_identities is read only in
    incremental runs, where dbt cannot see the ref: each model names it in a depends_on
    comment. -#}
{% macro person_scoped_incremental(events=false) -%}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ delete_touched_people(events=" ~ (events | string | lower) ~ ") }}",
) }}
{%- endmacro %}
