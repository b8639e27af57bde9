{#- The landing files as source relations, on warehouses that cannot read a file pattern in a
    FROM clause the way DuckDB's external_location does. Run at the start of every invocation
    (dbt_project.yml's on-run-start). The declaration stays the one in each source's YAML: the
    reader, file pattern and typed column list of meta.external_location. -#}
{% macro create_landing_sources() -%}
{{ return(adapter.dispatch('create_landing_sources', 'switchyard')()) }}
{%- endmacro %}

{#- DuckDB (dbt-duckdb) reads meta.external_location itself. -#}
{% macro default__create_landing_sources() -%}
{%- endmacro %}

{#- Spark: a table over the folder (JSON lines or Parquet, with the declared schema), created
    again each run so it lists the files landed since, and a view named as the source that adds
    the file each row came from (`filename`, a plain path as DuckDB gives it). -#}
{% macro spark__create_landing_sources() -%}
{%- if execute -%}
{%- for node in graph.sources.values() if (node.meta or {}).get('external_location') -%}
    {%- set reader = landing_reader(node) -%}
    {%- set folder, pattern = reader.glob.rsplit('/', 1) -%}
    {%- set files = node.schema ~ '.' ~ node.identifier ~ '__landing_files' -%}
    {%- do run_query('create database if not exists ' ~ node.schema) -%}
    {%- do run_query('drop table if exists ' ~ files) -%}
    {%- set options = ["pathGlobFilter " ~ dbt.string_literal(pattern)] -%}
    {%- if reader.format == 'parquet' -%}{%- do options.append("mergeSchema 'true'") -%}{%- endif -%}
    {%- set typed = [] -%}
    {%- for column in reader.columns -%}{%- do typed.append(spark_landing_column(column)) -%}{%- endfor -%}
    {%- do run_query(
        'create table ' ~ files ~ (' (' ~ typed | join(', ') ~ ')' if typed else '')
        ~ ' using ' ~ reader.format ~ ' options (' ~ options | join(', ') ~ ')'
        ~ ' location ' ~ dbt.string_literal(folder)) -%}
    {%- do run_query(
        'create or replace view ' ~ node.schema ~ '.' ~ node.identifier ~ ' as select *'
        ~ (", regexp_replace(_metadata.file_path, '^file:', '') as filename" if reader.filename else '')
        ~ ' from ' ~ files) -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro %}

{#- A source's reader from its meta.external_location: format (json or parquet), the file
    pattern, whether rows carry their file name, and the declared (name, DuckDB type) columns. -#}
{% macro landing_reader(node) -%}
{%- set location = node.meta.external_location -%}
{%- set columns = [] -%}
{%- for name, kind in modules.re.findall("\"?(\\w+)\"?\\s*:=\\s*'(\\w+)'", location) -%}
    {%- do columns.append((name, kind)) -%}
{%- endfor -%}
{{ return({
    'format': 'parquet' if location.lstrip().startswith('read_parquet') else 'json',
    'glob': landing_glob(node.source_name, node.name),
    'filename': 'filename=true' in location.replace(' ', ''),
    'columns': columns}) }}
{%- endmacro %}

{#- One column of a landing table's DDL: DuckDB's type names in Spark's (JSON is kept as text). -#}
{% macro spark_landing_column(column) -%}
{%- set types = {'VARCHAR': 'string', 'JSON': 'string', 'INTEGER': 'int', 'BIGINT': 'bigint',
                 'DOUBLE': 'double', 'BOOLEAN': 'boolean', 'TIMESTAMP': 'timestamp'} -%}
`{{ column[0] }}` {{ types.get(column[1] | upper) or exceptions.raise_compiler_error(
    "landing column " ~ column[0] ~ " has type " ~ column[1] ~ ", which has no Spark type here: "
    ~ "add it to spark_landing_column in macros/landing_sources.sql") }}
{%- endmacro %}
