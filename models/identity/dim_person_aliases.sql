-- Every person id that was ever replaced (fct_person_merges), with the people who now hold its
-- identifiers: follow its changes forward in time to ids that still exist. A split id can lead to
-- several people, itself among them when it still names someone (a row alias -> alias): readers
-- then keep what it recorded where it is and add it to the others. What was recorded under an
-- alias (sends, opens) counts for each of its people.
with recursive

changes as (

    select previous_person_id, person_id, processed_at
    from {{ ref('fct_person_merges') }}

),

followed as (

    select previous_person_id as alias_person_id, person_id, processed_at as changed_at
    from changes
    union
    -- the alias itself, kept below only if it still names someone (a split it survived, or an
    -- id that came back after a merge); aliased_at is then its first change
    select previous_person_id, previous_person_id, processed_at
    from changes
    union
    -- only later changes: a chain follows time, so it ends even where ids come back
    select followed.alias_person_id, changes.person_id, changes.processed_at
    from followed
    inner join changes
        on followed.person_id = changes.previous_person_id
        and changes.processed_at > followed.changed_at

),

current_people as (

    select distinct identities.person_id
    from {{ ref('dim_identities') }} as identities
    where identities.person_id in (select person_id from followed)

)

select
    followed.alias_person_id,
    followed.person_id,
    min(followed.changed_at) as aliased_at
from followed
inner join current_people
    on followed.person_id = current_people.person_id
group by followed.alias_person_id, followed.person_id
