-- The latest dry run of each journey: who would enter, the steps entries would take and what
-- would be sent or skipped and why. A view: it reads the preview files when queried, so a new
-- preview shows without a rebuild.
{{ config(materialized='view') }}

select * from {{ source('journeys', 'previews') }}
