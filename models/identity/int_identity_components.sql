-- The connected component of every mergeable identifier: label = the oldest node in it.
{{ config(post_hook="{{ connected_components_cleanup() }}") }}
{%- set labels = connected_components(
        "select node_id from " ~ ref('int_identity_nodes') ~ " where is_mergeable",
        ref('int_identity_edges'),
        identity_config().max_iterations) %}

select node_id, label as component_id
from {{ labels }}
