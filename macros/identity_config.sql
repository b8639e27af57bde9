{#- The identity settings from dbt_project.yml (vars.identity), with defaults filled in. -#}
{% macro identity_config() -%}
{%- set cfg = var('identity', {}) -%}
{%- do return({
    'anchor_type': cfg.get('anchor_type', 'user_id'),
    'sources': cfg.get('sources', []),
    'normalize': cfg.get('normalize', {}),
    'default_phone_region': cfg.get('default_phone_region', 'US'),
    'blocklist_values': cfg.get('blocklist_values', []),
    'blocklist_patterns': cfg.get('blocklist_patterns', []),
    'max_anchors_per_identifier': cfg.get('max_anchors_per_identifier', {'default': 5}),
    'max_iterations': cfg.get('max_iterations', 40) | int,
}) -%}
{%- endmacro %}

{#- A time as a zero-padded epoch-second string: sorts like the time itself. -#}
{% macro sortable_time(column) -%}
lpad(cast({{ dbt.datediff("cast('1970-01-01' as timestamp)", column, 'second') }} as {{ dbt.type_string() }}), 12, '0')
{%- endmacro %}
