"""A local channel sandbox: a real HTTP server on 127.0.0.1 that answers SendGrid, Twilio and FCM
requests the way those providers do, and records what it accepted."""

from sandbox.credentials import SANDBOX_CREDENTIALS, SandboxCredentials
from sandbox.server import Fault, Received, Sandbox

__all__ = ["SANDBOX_CREDENTIALS", "Fault", "Received", "Sandbox", "SandboxCredentials"]
