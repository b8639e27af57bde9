{#- This run's batch stamp, on every row an incremental model writes (identity's processed_at,
    intake's loaded_at): a model downstream reads the batches written since it last ran. -#}
{% macro run_batch_stamp() -%}
cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}
