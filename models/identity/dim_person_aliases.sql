-- Every person id that was ever replaced (fct_person_merges), with the people who now hold its
-- identifiers: follow its changes forward in time to ids that still exist. A split id can lead to
-- several people, itself among them when it still names someone (a row alias -> alias): readers
-- then keep what it recorded where it is and add it to the others. What was recorded under an
-- alias (sends, opens) counts for each of its people; its journey entries and send keys go on as
-- one of them, is_primary.
with recursive

changes as (

    select previous_person_id, person_id, processed_at, change_type, identifiers_moved
    from {{ ref('fct_person_merges') }}

),

followed as (

    -- left_at: when the identifiers left the alias on this path (its first change)
    select
        previous_person_id as alias_person_id,
        person_id,
        processed_at as changed_at,
        processed_at as left_at
    from changes
    {{ recursive_union() }}
    -- the alias itself, kept below only if it still names someone (a split it survived, or an
    -- id that came back after a merge)
    select previous_person_id, previous_person_id, processed_at, processed_at
    from changes
    {{ recursive_union() }}
    -- only later changes: a chain follows time, so it ends even where ids come back
    select followed.alias_person_id, changes.person_id, changes.processed_at, followed.left_at
    from followed
    inner join changes
        on followed.person_id = changes.previous_person_id
        and changes.processed_at > followed.changed_at

),

moves as (

    -- where a change took an id away (a merge, or a split it did not survive), the one person
    -- it went on as: who got most of its identifiers, then the first by id. A split it survived
    -- moves nothing: the id goes on as itself.
    select
        previous_person_id,
        person_id,
        processed_at,
        -- the id's move before this one (an id that came back can move again)
        lag(processed_at) over (
            partition by previous_person_id order by processed_at
        ) as previous_move_at
    from (
        select
            previous_person_id,
            person_id,
            processed_at,
            row_number() over (
                partition by previous_person_id, processed_at
                order by identifiers_moved desc, person_id
            ) as pick
        from changes
        where change_type = 'merge'
    ) as ranked
    where pick = 1

),

moved as (

    -- each id's next move only: where it went after the alias's identifiers arrived; moved_at:
    -- when the alias itself moved (an id that came back can have moved several times)
    select
        previous_person_id as alias_person_id,
        person_id,
        processed_at as changed_at,
        processed_at as moved_at
    from moves
    {{ recursive_union() }}
    select moved.alias_person_id, moves.person_id, moves.processed_at, moved.moved_at
    from moved
    inner join moves
        on moved.person_id = moves.previous_person_id
        and moves.processed_at > moved.changed_at
        and (moves.previous_move_at is null or moves.previous_move_at <= moved.changed_at)

),

current_people as (

    select distinct identities.person_id
    from {{ ref('dim_identities') }} as identities
    where identities.person_id in (select person_id from followed)

),

holders as (

    select
        followed.alias_person_id,
        followed.person_id,
        max(followed.left_at) as aliased_at
    from followed
    inner join current_people
        on followed.person_id = current_people.person_id
    group by followed.alias_person_id, followed.person_id

),

primaries as (

    -- the alias itself where it still names someone; else the end of the chain of its latest
    -- move that reaches someone; else (no such chain) its first holder by id
    select alias_person_id, person_id
    from (
        select
            holders.alias_person_id,
            holders.person_id,
            row_number() over (
                partition by holders.alias_person_id
                order by
                    case when holders.person_id = holders.alias_person_id then 0 else 1 end,
                    case when moved.person_id is not null then 0 else 1 end,
                    moved.moved_at desc,
                    moved.changed_at desc,
                    holders.person_id
            ) as pick
        from holders
        left join (
            select
                alias_person_id,
                person_id,
                max(moved_at) as moved_at,
                max(changed_at) as changed_at
            from moved
            group by alias_person_id, person_id
        ) as moved
            on holders.alias_person_id = moved.alias_person_id
            and holders.person_id = moved.person_id
    ) as ranked
    where pick = 1

)

select
    holders.alias_person_id,
    holders.person_id,
    holders.aliased_at,
    primaries.person_id is not null as is_primary
from holders
left join primaries
    on holders.alias_person_id = primaries.alias_person_id
    and holders.person_id = primaries.person_id
