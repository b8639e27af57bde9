"""The credentials the sandbox accepts; anything else gets the provider's 401."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxCredentials:
    sendgrid_api_key: str = "SG.sandbox-key"
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = "sandbox-auth-token"
    fcm_project_id: str = "switchyard-sandbox"
    fcm_access_token: str = "ya29.sandbox-token"
    braze_api_key: str = "braze-sandbox-rest-key"
    braze_app_id: str = "braze-sandbox-app"  # /messages/send's email app
    braze_sms_subscription_group: str = "sg-sms"
    customerio_site_id: str = "sandbox-site-id"
    customerio_api_key: str = "sandbox-track-api-key"
    customerio_app_api_key: str = "sandbox-app-api-key"  # the transactional (App) API's
    iterable_api_key: str = "sandbox-iterable-server-key"
    airship_token: str = "sandbox-airship-bearer-token"
    smtp_username: str = "switchyard"
    smtp_password: str = "sandbox-smtp-password"
    # signs the sandbox's unsubscribe and preference links (HS256: 32 bytes at least)
    link_secret: str = "sandbox-link-secret-0123456789abcdef"
    webhook_secret: str = (
        "whsec_c3dpdGNoeWFyZC1zYW5kYm94LXdlYmhvb2sta2V5ISE="  # Standard Webhooks: whsec_ + base64
    )


SANDBOX_CREDENTIALS = SandboxCredentials()
