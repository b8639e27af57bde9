{#- The latest non-null value of `column` per `partition_by` in `relation`, with when it was seen:
    "latest non-null wins", written portably (no IGNORE NULLS, no arg_max). -#}
{% macro latest_value(relation, partition_by, column, order_by, alias) -%}
select {{ partition_by }}, {{ alias }}, {{ alias }}_at
from (
    select
        {{ partition_by }},
        {{ column }} as {{ alias }},
        {{ order_by }} as {{ alias }}_at,
        row_number() over (partition by {{ partition_by }} order by {{ order_by }} desc) as recency
    from {{ relation }}
    where {{ column }} is not null
) ranked
where recency = 1
{%- endmacro %}
