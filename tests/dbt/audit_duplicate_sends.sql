-- Operators' check, shown in Dagster on fct_guard_violations: no send key accepted twice by a provider.
-- A warning, not an error: the run still publishes, and the rows say which sends.
{{ config(severity='warn') }}
select * from {{ ref('fct_guard_violations') }}
where violation = 'duplicate_send'
