-- Which anchors (user_ids) each non-anchor identifier appeared with, oldest link first. Computed
-- once: the nodes count these links to find shared identifiers, the resolution follows them.
-- Incremental: identifiers seen in the new batch get all their links recomputed.
{%- set cfg = identity_config() %}
with

occurrences as (

    select * from {{ ref('int_identifier_occurrences') }}
    where excluded_reason is null

),

affected as (

    select distinct identifier_key
    from occurrences
    where identifier_type <> '{{ cfg.anchor_type }}' and {{ identity_new_batch('occurrences') }}

),

others as (

    select occurrences.occurrence_id, occurrences.identifier_key, occurrences.occurred_at
    from occurrences
    {{- identity_scope_join('occurrences', 'affected', 'identifier_key') }}
    where occurrences.identifier_type <> '{{ cfg.anchor_type }}'

),

anchors as (

    select occurrence_id, identifier_key
    from occurrences
    where identifier_type = '{{ cfg.anchor_type }}'

),

links as (

    select
        others.identifier_key,
        anchors.identifier_key as anchor_key,
        min(others.occurred_at) as first_linked_at
    from others
    inner join anchors
        on others.occurrence_id = anchors.occurrence_id
    group by others.identifier_key, anchors.identifier_key

),

final as (

    select
        identifier_key,
        anchor_key,
        first_linked_at,
        row_number() over (
            partition by identifier_key order by first_linked_at, anchor_key
        ) as link_order,
        {{ identity_batch_stamp() }} as processed_at
    from links

)

select * from final
