-- Every step every entry took, with why: "branched to X because Y", "skipped because Z".
select * from {{ ref('stg_journeys__transitions') }}
