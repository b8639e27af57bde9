{#- Helpers of stg_cdp__events: a CDP's warehouse tables (Segment's, RudderStack's schema). -#}

{#- The relation's other columns (context_* left out too): an identify's traits, an event's
    properties. Read at run time; none while parsing. -#}
{% macro cdp_other_columns(relation) -%}
    {%- set standard = ['id', 'anonymous_id', 'user_id', 'received_at', 'sent_at', 'timestamp',
        'original_timestamp', 'uuid_ts', 'loaded_at', 'event', 'event_text', 'channel',
        'request_ip', 'rudder_id', 'name'] -%}
    {%- set names = [] -%}
    {%- if execute and relation is not none -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- set name = column.name | lower -%}
            {%- if name not in standard and not name.startswith('context_') -%}
                {%- do names.append(name) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(names) }}
{%- endmacro %}

{#- The Segment-style context object from the flattened context_* columns the table has. -#}
{% macro cdp_context(relation) -%}
    {%- set present = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- do present.append(column.name | lower) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set pairs = [] -%}
    {%- if 'context_timezone' in present -%}
        {%- do pairs.append(('timezone', 'context_timezone')) -%}
    {%- endif -%}
    {%- set device = [] -%}
    {%- if 'context_device_id' in present -%}{%- do device.append(('id', 'context_device_id')) -%}{%- endif -%}
    {%- if 'context_device_token' in present -%}{%- do device.append(('token', 'context_device_token')) -%}{%- endif -%}
    {%- if device -%}{%- do pairs.append(('device', json_object_of(device))) -%}{%- endif -%}
    {{ return(json_object_of(pairs)) }}
{%- endmacro %}

{#- The columns every call type maps the same way, in the landing files' names. -#}
{% macro cdp_common(relation, call_type, vendor) -%}
        '{{ call_type }}' as type,
        cast(id as {{ dbt.type_string() }}) as {{ adapter.quote('messageId') }},
        cast(user_id as {{ dbt.type_string() }}) as {{ adapter.quote('userId') }},
        cast(anonymous_id as {{ dbt.type_string() }}) as {{ adapter.quote('anonymousId') }},
        cast({{ adapter.quote('timestamp') }} as {{ dbt.type_string() }}) as {{ adapter.quote('timestamp') }},
        cast(received_at as {{ dbt.type_string() }}) as {{ adapter.quote('receivedAt') }},
        {{ cdp_context(relation) }} as context,
        cast(null as {{ dbt.type_string() }}) as {{ adapter.quote('previousId') }},
        cast(null as {{ dbt.type_string() }}) as {{ adapter.quote('groupId') }},
        '{{ vendor }}' as source,
        '{{ vendor }}:{{ relation.identifier }}' as filename
{%- endmacro %}
