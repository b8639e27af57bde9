{#- A line of an append-only landing file (ledger, inbox, feedback, privacy audit) that is not
    a whole JSON object: its writer was killed midway through a write (the kernel stops a write
    between pages). The sources read these files with DuckDB's read_json(ignore_errors=true),
    and Spark reads JSON permissively: both give such a line as a row whose every column is null
    (its file name aside). On Spark only with JSON filter pushdown off (profiles.yml): pushed into
    the reader, `send_key is null` is tested on the fields read before the cut, and the line is
    dropped. Staging lists it as a reject instead of failing every run after the
    kill. The same option reads a value of the wrong type (text in an integer column) as null,
    keeping the rest of its line: these files are written by Switchyard's own writers, which
    type every value. -#}
{% macro unreadable_line(columns) -%}
({% for column in columns %}{{ column }} is null{% if not loop.last %} and {% endif %}{% endfor %})
{%- endmacro %}

{% macro unreadable_line_reason() -%}
'unreadable line: not a whole JSON object (cut short by a writer stopped midway, or not JSON)'
{%- endmacro %}

{#- Columns every ledger line has: a row without any of them is an unreadable line. -#}
{% macro ledger_line_keys() -%}
{{ return(['send_key', 'run_id', 'status', 'recorded_at']) }}
{%- endmacro %}
