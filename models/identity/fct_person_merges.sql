-- Every change of person id: when people merge, the younger id's identifiers move to the older id;
-- when an identifier becomes shared, the person it leaves may get a new id (a split). Tables that
-- stored a person id (the delivery ledger, an export) follow it here, or through
-- dim_person_aliases. Appended by every run and kept by a --full-refresh (full_refresh: false);
-- the changes a rebuild makes are recorded too. It reads dim_identities.previous_person_id, which
-- the next dim_identities run overwrites: build the two together (path:models/identity).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    full_refresh=false,
    on_schema_change='fail',
) }}
with

changed as (

    select
        identities.previous_person_id,
        identities.person_id,
        count(*) as identifiers_moved,
        max(identities.processed_at) as processed_at
    from {{ ref('dim_identities') }} as identities
    where identities.previous_person_id is not null
        and {{ identity_new_batch('identities') }}
    group by identities.previous_person_id, identities.person_id

),

remaining as (

    -- previous ids that still name someone after the change
    select distinct identities.person_id
    from {{ ref('dim_identities') }} as identities
    where identities.person_id in (select previous_person_id from changed)

),

final as (

    select
        changed.previous_person_id,
        changed.person_id,
        case when remaining.person_id is null then 'merge' else 'split' end as change_type,
        changed.identifiers_moved,
        changed.processed_at
    from changed
    left join remaining
        on changed.previous_person_id = remaining.person_id

)

select * from final
