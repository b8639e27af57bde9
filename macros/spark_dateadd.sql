{#- dbt.dateadd on Spark. dbt-spark's goes through Unix seconds and drops the fraction of a
    second (an audience's enters_at would differ from DuckDB's by up to a second); Spark's
    timestampadd keeps it. Found by dbt_project.yml's dispatch search order for `dbt`. -#}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
timestampadd({{ datepart | upper }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro %}
