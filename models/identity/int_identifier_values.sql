-- Every identifier value as it arrived, one row per (occurrence, type), from the sources declared
-- in vars.identity.sources (a dbt model, or a table dbt does not manage: `relation:`).
-- Nothing is normalized or filtered yet.
{%- set cfg = identity_config() %}
with

{% for src in cfg.sources %}
{%- set name = src.model or src.relation %}
{{ name }}__values as (

    {% for identifier_type, column in src.identifiers.items() %}
    select
        '{{ name }}:' || cast({{ src.occurrence_id }} as {{ dbt.type_string() }}) as occurrence_id,
        '{{ identifier_type }}' as identifier_type,
        cast({{ column }} as {{ dbt.type_string() }}) as raw_value,
        {{ src.occurred_at }} as occurred_at,
        {{ src.get('arrived_at') or src.occurred_at }} as arrived_at,
        '{{ name }}' as source_model
    from {{ ref(src.model) if src.model else src.relation }}
    where {{ column }} is not null
        {%- if src.get('where') %} and ({{ src.where }}){% endif %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),
{% endfor %}

unioned as (

    {% for src in cfg.sources %}
    select * from {{ src.model or src.relation }}__values
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from unioned
