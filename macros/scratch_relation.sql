{#- A scratch table beside the model being built, dropped by the model's post-hook. -#}
{% macro scratch_relation(suffix) -%}
{{ return(api.Relation.create(database=this.database, schema=this.schema,
                              identifier=this.identifier ~ '__' ~ suffix, type='table')) }}
{%- endmacro %}

{% macro drop_scratch_relations(suffixes) -%}
{%- for suffix in suffixes -%}
    {%- do adapter.drop_relation(scratch_relation(suffix)) -%}
{%- endfor -%}
{%- endmacro %}
