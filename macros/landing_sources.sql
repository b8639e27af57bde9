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

{#- Spark: a table over the folder (JSON lines or Parquet, with the declared schema) and a view
    named as the source that adds the file each row came from (`filename`, a plain path as DuckDB
    gives it). The table is refreshed each run, so it lists the files landed since; it is made
    again only when its declaration changed (a hash of its DDL kept as a table property): other
    processes on a shared Spark (Spark Connect) read it meanwhile, and a table dropped and made
    again under them would be missing for that moment. -#}
{% macro spark__create_landing_sources() -%}
{%- if execute -%}
{%- for node in graph.sources.values() if (node.meta or {}).get('external_location') -%}
    {%- set reader = landing_reader(node) -%}
    {%- set folder, pattern = reader.glob.rsplit('/', 1) -%}
    {%- set name = node.identifier ~ '__landing_files' -%}
    {%- set files = node.schema ~ '.' ~ name -%}
    {%- do run_query('create database if not exists ' ~ node.schema) -%}
    {%- set options = ["pathGlobFilter " ~ dbt.string_literal(pattern)] -%}
    {%- if reader.format == 'parquet' -%}{%- do options.append("mergeSchema 'true'") -%}{%- endif -%}
    {%- set typed = [] -%}
    {%- for column in reader.columns -%}{%- do typed.append(spark_landing_column(column)) -%}{%- endfor -%}
    {%- set ddl = 'create table ' ~ files ~ (' (' ~ typed | join(', ') ~ ')' if typed else '')
        ~ ' using ' ~ reader.format ~ ' options (' ~ options | join(', ') ~ ')'
        ~ ' location ' ~ dbt.string_literal(folder) -%}
    {%- set declared = local_md5(ddl) -%}
    {%- set made = run_query('show tables in ' ~ node.schema ~ ' like ' ~ dbt.string_literal(name)) -%}
    {%- set kept = [] -%}
    {%- if made.rows | length > 0 -%}
        {%- set property = run_query('show tblproperties ' ~ files
            ~ ' (' ~ dbt.string_literal('switchyard.declared') ~ ')') -%}
        {%- if property.rows | length > 0 and property.rows[0][-1] == declared -%}
            {%- do kept.append(files) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if kept -%}
        {%- do run_query('refresh table ' ~ files) -%}
    {%- else -%}
        {%- do run_query('drop table if exists ' ~ files) -%}
        {%- do run_query(ddl ~ ' tblproperties (' ~ dbt.string_literal('switchyard.declared')
            ~ ' = ' ~ dbt.string_literal(declared) ~ ')') -%}
    {%- endif -%}
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
