{#- Incremental intake. A base model loads each landing file of its source once: a full build
    reads every file, an incremental run only the files not loaded yet (listed when the model
    compiles, so a file landing mid-run waits for the next run, never half read). Landing files
    are append-only (DESIGN.md): a file changed or removed after it was loaded needs
    `dbt build --full-refresh --select base_<source>__<table>+`. Only for sources whose files
    are complete when they appear (a rename into the folder): a file that grows while visible
    (switchyard.landing.AppendLog: feedback, inbox, ledger) would lose the lines appended after
    its load. -#}

{#- The glob of a source table's landing files: the first quoted pattern of its
    meta.external_location, so the path is declared once, in the source's YAML. -#}
{% macro landing_glob(source_name, table_name) -%}
{%- set node = graph.sources.get('source.' ~ project_name ~ '.' ~ source_name ~ '.' ~ table_name) -%}
{%- set location = (node.meta or {}).get('external_location') if node else none -%}
{%- set found = modules.re.search("'([^']*[*][^']*)'", location or '') -%}
{%- if not found -%}
{{ exceptions.raise_compiler_error(
    "source " ~ source_name ~ "." ~ table_name ~ " has no landing glob: its meta.external_location "
    ~ "must read a quoted file pattern such as '.../" ~ source_name ~ "/" ~ table_name ~ "/*.jsonl'") }}
{%- endif -%}
{{ return(found.group(1)) }}
{%- endmacro %}

{#- The source table's landing files now, sorted (full paths, as its filename column gives
    them). -#}
{% macro landing_file_list(source_name, table_name) -%}
{{ return(adapter.dispatch('landing_file_list', 'switchyard')(source_name, table_name)) }}
{%- endmacro %}

{% macro duckdb__landing_file_list(source_name, table_name) -%}
{%- set pattern = landing_glob(source_name, table_name) -%}
{%- set listed = run_query("select file from glob(" ~ dbt.string_literal(pattern) ~ ") order by file") -%}
{{ return(listed.columns[0].values() | list) }}
{%- endmacro %}

{#- Spark lists a table's files only while reading it: the files that hold rows, read through
    the source (macros/landing_sources.sql), which scans them (a cost that grows with the
    landing history; docs/scaling.md). -#}
{% macro spark__landing_file_list(source_name, table_name) -%}
{%- set listed = run_query("select distinct filename from " ~ source(source_name, table_name) ~ " order by filename") -%}
{{ return(listed.columns[0].values() | list) }}
{%- endmacro %}

{% macro default__landing_file_list(source_name, table_name) -%}
{{ exceptions.raise_compiler_error(
    "incremental intake lists landing files with DuckDB's glob(); add a " ~ adapter.type()
    ~ "__landing_file_list macro for this adapter") }}
{%- endmacro %}

{#- A filter on `file_column` (the reader's filename) that keeps the rows of the files not in
    this model yet, compared by file name (a moved landing folder is not new data). Every file in
    a full build. -#}
{% macro landing_files_not_loaded(source_name, table_name, file_column='filename', loaded_column='source_file') -%}
{%- if not execute or not is_incremental() -%}
{{ return('1 = 1') }}
{%- endif -%}
{%- set loaded_rows = run_query('select distinct ' ~ loaded_column ~ ' from ' ~ this) -%}
{%- set loaded = {} -%}
{%- for path in loaded_rows.columns[0].values() if path -%}
{%- do loaded.update({path.replace('\\', '/').split('/')[-1]: true}) -%}
{%- endfor -%}
{%- set fresh = [] -%}
{%- for path in landing_file_list(source_name, table_name) -%}
{%- if path.replace('\\', '/').split('/')[-1] not in loaded -%}
{%- do fresh.append(dbt.string_literal(path)) -%}
{%- endif -%}
{%- endfor -%}
{{ return(file_column ~ ' in (' ~ fresh | join(', ') ~ ')' if fresh else '1 = 0') }}
{%- endmacro %}

{#- In an incremental run, the rows of `alias` loaded since this model last ran. -#}
{% macro landing_new_batch(alias) -%}
{%- if is_incremental() -%}
{{ alias }}.loaded_at > {{ latest_in_this('max(loaded_at)', 'loaded_at') }}
{%- else -%}
1 = 1
{%- endif -%}
{%- endmacro %}
