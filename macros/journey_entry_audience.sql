{#- The entry audience of the journey declared in this model's `meta.journey`:
    one entry per open episode: the first entry event since the person's last conversion,
    entering `within_minutes` after it unless the `unless` event came first. Exits are the first
    `exit_on` event after the entry event. `arm` puts `holdout_percent` of the journey's people in
    a control group that receives nothing. The journey engine reads the same declaration. -#}
{% macro journey_entry_audience() -%}
{#- At parse time meta is not resolved yet; only the refs matter then. -#}
{%- set journey = {'name': 'parsing', 'entry': {'event': 'parsing'}} -%}
{%- if execute -%}
    {%- set journey = (model.config.meta or {}).get('journey') -%}
    {%- if not journey -%}
        {{ exceptions.raise_compiler_error("model " ~ model.name ~ " calls journey_entry_audience() but declares no meta.journey in its YAML") }}
    {%- endif -%}
{%- endif -%}
{%- set entry = journey['entry'] -%}
{%- set unless = entry.get('unless') -%}
{%- set exit_on = journey.get('exit_on', []) -%}
{%- set exit_on = [exit_on] if exit_on is string else exit_on -%}
{%- set within = entry.get('within_minutes', 0) | int -%}
with

events as (

    select * from {{ ref('int_events_stitched') }}
    where person_id is not null

),

entry_events as (

    select person_id, event_id, occurred_at, properties
    from events
    where event_type = 'track' and event_name = '{{ entry["event"] }}'

),

blocking_events as (

    select person_id, occurred_at
    from events
    where event_type = 'track'
        and event_name in ({% for e in ([unless] if unless else []) + exit_on %}'{{ e }}'{{ ', ' if not loop.last }}{% endfor %}{% if not unless and not exit_on %}null{% endif %})

),

episodes as (

    -- Entry events since the same last blocking event belong to one episode.
    select
        entry_events.person_id,
        entry_events.event_id,
        entry_events.occurred_at,
        entry_events.properties,
        max(blocking_events.occurred_at) as episode_opened_after
    from entry_events
    left join blocking_events
        on entry_events.person_id = blocking_events.person_id
        and blocking_events.occurred_at <= entry_events.occurred_at
    group by
        entry_events.person_id,
        entry_events.event_id,
        entry_events.occurred_at,
        entry_events.properties

),

first_of_episode as (

    select *
    from (
        select
            *,
            row_number() over (
                partition by person_id, episode_opened_after order by occurred_at, event_id
            ) as position_in_episode
        from episodes
    ) ranked
    where position_in_episode = 1

),

closed as (

    select
        first_of_episode.person_id,
        first_of_episode.event_id,
        first_of_episode.occurred_at,
        first_of_episode.properties,
        min(blocking_events.occurred_at) as closed_at
    from first_of_episode
    left join blocking_events
        on first_of_episode.person_id = blocking_events.person_id
        and blocking_events.occurred_at > first_of_episode.occurred_at
    group by
        first_of_episode.person_id,
        first_of_episode.event_id,
        first_of_episode.occurred_at,
        first_of_episode.properties

),

entries as (

    select
        -- the episode's first event names the entry, not the person: when identity resolution
        -- merges the person later, the entry keeps its id (the engine follows it to them)
        {{ dbt.hash("'" ~ journey['name'] ~ ":' || event_id") }} as entry_id,
        -- what entries were named before (journey, person, event): an episode begun under it
        -- goes on as that entry
        {{ dbt.hash("'" ~ journey['name'] ~ ":' || person_id || ':' || event_id") }}
            as former_entry_id,
        '{{ journey["name"] }}' as journey,
        person_id,
        event_id as entry_event_id,
        occurred_at as entry_event_at,
        {{ dbt.dateadd('minute', within, 'occurred_at') }} as enters_at,
        closed_at as exited_at,
        cast(properties as {{ dbt.type_string() }}) as entry_properties,
        -- stable per journey and person: a re-run or a rebuild assigns the same way
        {{ journey_arm(journey['name'], 'person_id', journey.get('holdout_percent', 0)) }} as arm
    from closed
    where closed_at is null
        or closed_at > {{ dbt.dateadd('minute', within, 'occurred_at') }}

)

select * from entries
{%- endmacro %}
