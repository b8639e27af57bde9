"""Channel clients over one sending core. Adding a channel is one module with a client class."""

from activations.channels.core import ChannelClient, Sender
from activations.channels.message import Message, Outcome
from activations.channels.policy import HttpTimeouts, RateLimiter, RetryPolicy
from activations.channels.settings import ChannelSettings

__all__ = [
    "ChannelClient",
    "ChannelSettings",
    "HttpTimeouts",
    "Message",
    "Outcome",
    "RateLimiter",
    "RetryPolicy",
    "Sender",
]
