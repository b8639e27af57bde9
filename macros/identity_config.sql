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
    'lookback_hours': cfg.get('lookback_hours', 72) | int,
}) -%}
{%- endmacro %}

{#- In an incremental run, keeps the rows of `alias` that arrived within
    vars.identity.lookback_hours of the latest one already processed (earlier ones were processed
    before). Rows that arrive later than that are reported by the identity_unprocessed_rows test
    and need a --full-refresh. -#}
{% macro identity_window(alias) -%}
{%- if is_incremental() -%}
{{ alias }}.arrived_at >= {{ latest_in_this(
    dbt.dateadd('hour', -1 * identity_config().lookback_hours, 'max(arrived_at)')
) }}
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{#- `expression` (a timestamp aggregate) over this model's table, as a literal: a filter against a
    constant lets the warehouse skip the blocks that cannot match (min/max statistics, which a
    subquery does not get), and this model's newest rows sit in its last blocks. `column`: the
    column it reads, when a table built by an earlier version may not have it yet (then every
    row is newer: the model's on_schema_change adds the column). -#}
{% macro latest_in_this(expression, column=none) -%}
{%- set found = none -%}
{%- if execute -%}
{%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list if column else [] -%}
{%- if column is none or column | lower in columns -%}
{%- set found = run_query('select ' ~ expression ~ ' from ' ~ this).columns[0].values()[0] -%}
{%- endif -%}
{%- endif -%}
{%- if found is none -%}
cast('1900-01-01 00:00:00' as timestamp)
{%- else -%}
cast('{{ found.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endif -%}
{%- endmacro %}


{#- In an incremental run: rows of `alias` written by upstream models since this model last ran. -#}
{% macro identity_new_batch(alias) -%}
{%- if is_incremental() -%}
{{ alias }}.processed_at > {{ latest_in_this('max(processed_at)') }}
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{#- In an incremental run, true for rows whose `column` is among those `scope_sql` selects (a
    semi-join, cheaper than a join against a large table); true for every row in a full build. -#}
{% macro identity_in_scope(column, scope_sql) -%}
{%- if is_incremental() -%}
{{ column }} in ({{ scope_sql }})
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}

{#- 1, 2, 3... over a select's rows in no particular order (labels, not ranks). -#}
{% macro unordered_row_number() -%}
{{ return(adapter.dispatch('unordered_row_number', 'switchyard')()) }}
{%- endmacro %}

{% macro default__unordered_row_number() -%}
row_number() over ()
{%- endmacro %}

{#- Spark wants an order: the rows' own ids, so no sort on a key is paid for (the window
    still gathers every row in one task, which bounds the graph's first build on a cluster). -#}
{% macro spark__unordered_row_number() -%}
row_number() over (order by monotonically_increasing_id())
{%- endmacro %}
