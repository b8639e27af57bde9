-- Every landed row that staging could not use, with the reason: nothing is dropped silently.
{% set rejectable = [
    ('segment.events', 'stg_segment__events', 'event_id'),
    ('segment.rejects', 'stg_segment__rejects', 'message_id'),
    ('shop.orders', 'stg_shop__orders', 'order_id'),
    ('preferences.consents', 'stg_preferences__consents', 'consent_id'),
    ('preferences.suppressions', 'stg_preferences__suppressions', 'suppression_id'),
    ('feedback.events', 'stg_feedback__events', 'event_id'),
    ('inbox.messages', 'stg_inbox__messages', 'send_key'),
    ('ledger.deliveries', 'stg_ledger__rejects', 'send_key'),
    ('privacy.audit', 'stg_privacy__audit', 'request_id'),
] %}
with

{% for source_name, model, key in rejectable %}
{{ model }} as (

    select
        '{{ source_name }}' as source_table,
        {{ key }} as row_key,
        reject_reason,
        source_file
    from {{ ref(model) }}
    where reject_reason is not null

),
{% endfor %}

unioned as (

    {% for source_name, model, key in rejectable %}
    select * from {{ model }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

)

select * from unioned
