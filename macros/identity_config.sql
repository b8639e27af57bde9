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

{#- In an incremental run, the rows to (re)process: those within vars.identity.lookback_hours of
    the latest one already processed. Later-arriving rows need a --full-refresh. -#}
{% macro identity_window(column, processed_column='occurred_at') -%}
{%- if is_incremental() -%}
{{ column }} >= (
    select {{ dbt.dateadd('hour', -1 * (var('identity', {}).get('lookback_hours', 72) | int), 'max(' ~ processed_column ~ ')') }}
    from {{ this }}
)
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{#- This run's batch stamp, stored on every row an identity model writes. -#}
{% macro identity_batch_stamp() -%}
cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}

{#- In an incremental run: rows of `alias` written by upstream models since this model last ran. -#}
{% macro identity_new_batch(alias) -%}
{%- if is_incremental() -%}
{{ alias }}.processed_at > (
    select coalesce(max(processed_at), cast('1900-01-01' as timestamp)) from {{ this }}
)
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}
