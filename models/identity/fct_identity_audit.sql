-- Every identifier kept out of merging, and every merge the guards refused, with the reason.
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

identities as (

    select * from {{ ref('dim_identities') }}

),

excluded_values as (

    select
        identifier_type,
        raw_value as identifier_value,
        excluded_reason as reason,
        count(*) as occurrence_count,
        min(occurred_at) as first_seen_at
    from occurrences
    where excluded_reason is not null
    group by identifier_type, raw_value, excluded_reason

),

shared_identifiers as (

    select
        identifier_type,
        identifier_value,
        'shared identifier: seen with ' || cast(anchor_count as {{ dbt.type_string() }})
            || ' anchors (limit ' || cast(anchor_limit as {{ dbt.type_string() }}) || ')' as reason,
        occurrence_count,
        first_seen_at
    from nodes
    where is_shared

),

ambiguous as (

    select
        identities.identifier_type,
        identities.identifier_value,
        case identities.resolution
            when 'ambiguous_first_link' then 'component reaches several anchors: kept with the one it was seen with first'
            else 'component reaches several anchors: not attached to any'
        end as reason,
        nodes.occurrence_count,
        identities.first_seen_at
    from identities
    inner join nodes
        on identities.identifier_key = nodes.identifier_key
    where identities.resolution in ('ambiguous_first_link', 'ambiguous_unattached')

),

unioned as (

    select * from excluded_values
    union all
    select * from shared_identifiers
    union all
    select * from ambiguous

)

select * from unioned
