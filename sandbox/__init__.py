"""A local channel sandbox: a real HTTP server on 127.0.0.1 that answers SendGrid, Twilio and FCM
requests the way those providers do, and records what it accepted."""

from sandbox.credentials import SANDBOX_CREDENTIALS, SandboxCredentials
from sandbox.server import RANDOM_FAULTS, Fault, Received, Sandbox

__all__ = [
    "RANDOM_FAULTS",
    "SANDBOX_CREDENTIALS",
    "Fault",
    "Received",
    "Sandbox",
    "SandboxCredentials",
]
