-- Every identifier value as it arrived, one row per (occurrence, type), from the sources declared
-- in vars.identity.sources. Nothing is normalized or filtered yet.
{%- set cfg = identity_config() %}
with

{% for src in cfg.sources %}
{{ src.model }}__values as (

    {% for identifier_type, column in src.identifiers.items() %}
    select
        '{{ src.model }}:' || cast({{ src.occurrence_id }} as {{ dbt.type_string() }}) as occurrence_id,
        '{{ identifier_type }}' as identifier_type,
        cast({{ column }} as {{ dbt.type_string() }}) as raw_value,
        {{ src.occurred_at }} as occurred_at,
        '{{ src.model }}' as source_model
    from {{ ref(src.model) }}
    where {{ column }} is not null
        {%- if src.get('where') %} and ({{ src.where }}){% endif %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),
{% endfor %}

unioned as (

    {% for src in cfg.sources %}
    select * from {{ src.model }}__values
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from unioned
