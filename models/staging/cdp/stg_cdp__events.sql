-- A CDP's warehouse tables (Segment's or RudderStack's schema) in the shape the landing files
-- have, so stg_segment__events takes them beside the collector's events under the same rules.
-- Columns the vendors add to every table (ids, times, context_*) are mapped; the other columns
-- of identifies are the traits, those of a per-event table the event's properties.
{{ config(enabled=var('cdp_warehouse')['enabled'] | as_bool) }}
{%- set cfg = var('cdp_warehouse') %}
with

event_properties as (

    {%- set parts = [] %}
    {%- for table in cfg.get('event_tables', []) %}
        {%- set relation = adapter.get_relation(database=target.database, schema=cfg.schema, identifier=table) if execute else none %}
        {%- if relation is not none %}
            {%- set pairs = [] %}
            {%- for name in cdp_other_columns(relation) %}{% do pairs.append((name, name)) %}{% endfor %}
            {%- do parts.append('select cast(id as ' ~ dbt.type_string() ~ ') as property_id, ' ~ json_object_of(pairs) ~ ' as properties from ' ~ relation) %}
        {%- endif %}
    {%- endfor %}
    {%- if parts %}
    {{ parts | join('\n    union all\n    ') }}
    {%- else %}
    select cast(null as {{ dbt.type_string() }}) as property_id, {{ json_object_of([]) }} as properties
    where 1 = 0
    {%- endif %}

),

tracks as (

    select
        {{ cdp_common(source('cdp', 'tracks'), 'track', cfg.vendor) }},
        coalesce(event_text, event) as event,
        cast(null as {{ dbt.type_string() }}) as name,
        event_properties.properties,
        {{ json_object_of([]) }} as traits
    from {{ source('cdp', 'tracks') }}
    left join event_properties
        on cast({{ source('cdp', 'tracks') }}.id as {{ dbt.type_string() }}) = event_properties.property_id

),

identifies as (

    {%- set traits = [] %}
    {%- for name in cdp_other_columns(source('cdp', 'identifies')) %}{% do traits.append((name, name)) %}{% endfor %}
    select
        {{ cdp_common(source('cdp', 'identifies'), 'identify', cfg.vendor) }},
        cast(null as {{ dbt.type_string() }}) as event,
        cast(null as {{ dbt.type_string() }}) as name,
        {{ json_object_of([]) }} as properties,
        {{ json_object_of(traits) }} as traits
    from {{ source('cdp', 'identifies') }}

),

{% for table, call_type in [('pages', 'page'), ('screens', 'screen')] %}
{{ table }} as (

    {%- set props = [] %}
    {%- for name in cdp_other_columns(source('cdp', table)) %}{% do props.append((name, name)) %}{% endfor %}
    select
        {{ cdp_common(source('cdp', table), call_type, cfg.vendor) }},
        cast(null as {{ dbt.type_string() }}) as event,
        cast(name as {{ dbt.type_string() }}) as name,
        {{ json_object_of(props) }} as properties,
        {{ json_object_of([]) }} as traits
    from {{ source('cdp', table) }}

),
{% endfor %}

unioned as (

    {% for part in ['tracks', 'identifies', 'pages', 'screens'] %}
    select
        type, {{ adapter.quote('messageId') }}, event, name, {{ adapter.quote('userId') }}, {{ adapter.quote('anonymousId') }}, {{ adapter.quote('timestamp') }}, properties, traits,
        context, {{ adapter.quote('previousId') }}, {{ adapter.quote('groupId') }}, {{ adapter.quote('receivedAt') }}, source, filename
    from {{ part }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from unioned
