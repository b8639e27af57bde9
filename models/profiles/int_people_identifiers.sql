-- Every person with their identifiers: the spine of the profile (people seen only in orders too).
-- Person-scoped incremental: a run recomputes the people whose identifiers changed
-- (macros/people_touched.sql).
{{ person_scoped_incremental() }}
{%- set anchor = identity_config().anchor_type %}
with

identities as (

    select * from {{ ref('dim_identities') }} as identities
    where {{ person_touched('identities.person_id') }}

),

latest_email as (

    select person_id, identifier_value as email
    from (
        select
            person_id,
            identifier_value,
            row_number() over (
                partition by person_id order by last_seen_at desc, identifier_value
            ) as recency
        from identities
        where identifier_type = 'email'
    ) ranked
    where recency = 1

),

people as (

    select
        person_id,
        max(case when identifier_type = '{{ anchor }}' then identifier_value end) as user_id,
        count(*) as identifier_count,
        {{ sorted_listagg('identifier_key', "', '") }} as identifiers,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at
    from identities
    group by person_id

),

final as (

    select
        people.*,
        latest_email.email as identifier_email,
        {{ run_batch_stamp() }} as profiled_at
    from people
    left join latest_email
        on people.person_id = latest_email.person_id

)

select * from final
