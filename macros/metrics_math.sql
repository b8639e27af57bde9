{#- Statistics for the journey metrics, as portable SQL expressions (sqrt, ln and power exist on
    DuckDB and Spark alike). -#}

{#- The metrics' fractional type: 64-bit (dbt.type_float() is 32-bit on DuckDB and Spark). -#}
{% macro metric_float() -%}double{%- endmacro %}

{#- numerator / denominator as a float; null when the denominator is 0 or null. -#}
{% macro safe_ratio(numerator, denominator) -%}
case when {{ denominator }} > 0
    then cast({{ numerator }} as {{ metric_float() }}) / {{ denominator }} end
{%- endmacro %}

{#- z for a two-sided 95% interval: every interval in models/metrics is at 95%. -#}
{% macro z95() -%}1.959963984540054{%- endmacro %}

{#- x / n as a float (a proportion, a rate). -#}
{% macro proportion(x, n) -%}
(cast({{ x }} as {{ metric_float() }}) / {{ n }})
{%- endmacro %}

{#- Wilson score interval of a proportion x/n: its lower (side = -1) or upper (side = 1) bound. -#}
{% macro wilson_bound(x, n, side) -%}
{%- set p = proportion(x, n) -%}
(
    ({{ p }} + {{ z95() }} * {{ z95() }} / (2.0 * {{ n }}))
    {{ '-' if side < 0 else '+' }} {{ z95() }} * sqrt(
        {{ p }} * (1 - {{ p }}) / {{ n }} + {{ z95() }} * {{ z95() }} / (4.0 * {{ n }} * {{ n }})
    )
) / (1 + {{ z95() }} * {{ z95() }} / {{ n }})
{%- endmacro %}

{#- Newcombe's hybrid score interval (his method 10) for the difference of two proportions
    x1/n1 - x0/n0: it combines each arm's Wilson interval, and unlike the plain Wald interval
    keeps close to 95% coverage with small counts and rates near 0 or 1. side: -1 lower, 1 upper. -#}
{% macro newcombe_bound(x1, n1, x0, n0, side) -%}
{%- set p1 = proportion(x1, n1) -%}
{%- set p0 = proportion(x0, n0) -%}
case when {{ n1 }} > 0 and {{ n0 }} > 0 then
{%- if side < 0 %}
    ({{ p1 }} - {{ p0 }}) - sqrt(
        power({{ p1 }} - {{ wilson_bound(x1, n1, -1) }}, 2)
        + power({{ wilson_bound(x0, n0, 1) }} - {{ p0 }}, 2)
    )
{%- else %}
    ({{ p1 }} - {{ p0 }}) + sqrt(
        power({{ wilson_bound(x1, n1, 1) }} - {{ p1 }}, 2)
        + power({{ p0 }} - {{ wilson_bound(x0, n0, -1) }}, 2)
    )
{%- endif %}
end
{%- endmacro %}

{#- The ratio of two proportions (x1/n1) / (x0/n0) with its 95% interval on the log scale
    (Katz): exp(ln(ratio) +- z * sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0)). Relative lift is this minus 1.
    The ratio needs a conversion in the baseline; its interval one in both arms. side: -1 lower,
    0 the ratio, 1 upper. -#}
{% macro risk_ratio_bound(x1, n1, x0, n0, side) -%}
{%- set ratio = proportion(x1, n1) ~ " / " ~ proportion(x0, n0) -%}
{%- if side == 0 -%}
case when {{ x0 }} > 0 and {{ n1 }} > 0 then {{ ratio }} end
{%- else -%}
case when {{ x1 }} > 0 and {{ x0 }} > 0 then
    exp(
        ln({{ ratio }})
        {{ '-' if side < 0 else '+' }} {{ z95() }} * sqrt(
            1.0 / {{ x1 }} - 1.0 / {{ n1 }} + 1.0 / {{ x0 }} - 1.0 / {{ n0 }}
        )
    )
end
{%- endif -%}
{%- endmacro %}

{#- Difference of two means with its 95% interval from the normal approximation with each arm's
    own variance (Welch's standard error): (m1 - m0) +- z * sqrt(v1/n1 + v0/n0). side as above. -#}
{% macro mean_difference_bound(m1, v1, n1, m0, v0, n0, side) -%}
case when {{ n1 }} > 1 and {{ n0 }} > 1 then
    ({{ m1 }} - {{ m0 }})
    {%- if side != 0 %}
    {{ '-' if side < 0 else '+' }} {{ z95() }} * sqrt({{ v1 }} / {{ n1 }} + {{ v0 }} / {{ n0 }})
    {%- endif %}
end
{%- endmacro %}

{#- The values of a text expression joined in sorted order: the same label for the same
    set on every engine (dbt-spark's listagg ignores its order clause). -#}
{% macro sorted_listagg(expression, delimiter) -%}
{{ return(adapter.dispatch('sorted_listagg', 'switchyard')(expression, delimiter)) }}
{%- endmacro %}

{% macro default__sorted_listagg(expression, delimiter) -%}
{{ dbt.listagg(expression, delimiter, "order by " ~ expression) }}
{%- endmacro %}

{% macro spark__sorted_listagg(expression, delimiter) -%}
array_join(array_sort(collect_list({{ expression }})), {{ delimiter }})
{%- endmacro %}
