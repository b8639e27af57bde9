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

{#- Spark: a table over the folder (JSON lines or Parquet) and a view named as the source that
    adds the file each row came from (`filename`, a plain path as DuckDB gives it). Other
    processes on a shared Spark (Spark Connect: journeys, syncs) read them while a dbt run
    starts, and Spark's Hive catalog replaces a table or a view by dropping it first: so a
    source with declared columns keeps its table, refreshed to list the files landed since, and
    its view, each made again only when its statement changed (a hash of it kept as a table
    property). A source without declared columns (Parquet, its schema read from the files) is
    made again each run, so that a column a writer added is seen. -#}
{% macro spark__create_landing_sources() -%}
{%- if execute -%}
{%- for node in graph.sources.values() if (node.meta or {}).get('external_location') -%}
    {%- set reader = landing_reader(node) -%}
    {%- set folder, pattern = reader.glob.rsplit('/', 1) -%}
    {%- set files = node.identifier ~ '__landing_files' -%}
    {%- do run_query('create database if not exists ' ~ node.schema) -%}
    {%- set options = ["pathGlobFilter " ~ dbt.string_literal(pattern)] -%}
    {%- if reader.format == 'parquet' -%}{%- do options.append("mergeSchema 'true'") -%}{%- endif -%}
    {%- set typed = [] -%}
    {%- for column in reader.columns -%}{%- do typed.append(spark_landing_column(column)) -%}{%- endfor -%}
    {%- set table = ' (' ~ typed | join(', ') ~ ')' if typed else '' -%}
    {%- set table = table ~ ' using ' ~ reader.format ~ ' options (' ~ options | join(', ') ~ ')'
        ~ ' location ' ~ dbt.string_literal(folder) -%}
    {%- if typed and spark_landing_kept(node.schema, files, table) -%}
        {%- do run_query('refresh table ' ~ node.schema ~ '.' ~ files) -%}
    {%- else -%}
        {%- do run_query('drop table if exists ' ~ node.schema ~ '.' ~ files) -%}
        {%- do run_query('create table ' ~ node.schema ~ '.' ~ files ~ table
            ~ spark_landing_property(table)) -%}
    {%- endif -%}
    {%- set view = ' as select *'
        ~ (", regexp_replace(_metadata.file_path, '^file:', '') as filename" if reader.filename else '')
        ~ ' from ' ~ node.schema ~ '.' ~ files -%}
    {#- Spark keeps a view's columns as they were when it was made: made again with its table -#}
    {%- set view_declared = table ~ view -%}
    {%- if not (typed and spark_landing_kept(node.schema, node.identifier, view_declared)) -%}
        {%- do run_query('create or replace view ' ~ node.schema ~ '.' ~ node.identifier
            ~ spark_landing_property(view_declared) ~ view) -%}
    {%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro %}

{#- Whether `schema`.`name` exists, made from `statement` (its switchyard.declared property). -#}
{% macro spark_landing_kept(schema, name, statement) -%}
{%- set found = run_query('show tables in ' ~ schema ~ ' like ' ~ dbt.string_literal(name)) -%}
{%- if found.rows | length == 0 -%}{{ return(false) }}{%- endif -%}
{%- set property = run_query('show tblproperties ' ~ schema ~ '.' ~ name
    ~ ' (' ~ dbt.string_literal('switchyard.declared') ~ ')') -%}
{{ return(property.rows[0][-1] == local_md5(statement)) }}
{%- endmacro %}

{% macro spark_landing_property(statement) -%}
{{ return(' tblproperties (' ~ dbt.string_literal('switchyard.declared') ~ ' = '
    ~ dbt.string_literal(local_md5(statement)) ~ ')') }}
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
