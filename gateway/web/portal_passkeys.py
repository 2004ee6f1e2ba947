"""Passkeys for drivers (WebAuthn Level 2, py_webauthn): a signed-in driver adds one, and
signs in with it later instead of asking for an e-mailed link.

The ceremonies are JSON requests from `static/passkeys.js` (the pages work without it: the
e-mailed link stays). Each carries a CSRF token in `X-CSRF-Token` (the session's, or the
pre-session token before sign-in); each challenge is kept server-side for five minutes and
answered once. Passkeys are discoverable credentials (resident keys), so sign-in needs no
user name. The relying party is the portal's host (`--public-url`, else the request's)."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway.ledger.passkey_store import Passkey, PasskeyStore
from gateway.web.portal_frame import PortalFrame
from gateway.web.sessions import csrf_ok, pre_session_ok
from gateway.web.templating import page_headers

RP_NAME = "ev-terminal"
MAX_BODY = 16 * 1024


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=page_headers())


def passkey_routes(frame: PortalFrame, store: PasskeyStore, public_url: str | None) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def party(request: Request) -> tuple[str, str]:
        """(relying party id, expected origin)."""
        url = urlsplit(public_url or str(request.base_url))
        return str(url.hostname), f"{url.scheme}://{url.netloc}"

    async def body(request: Request) -> dict[str, Any] | None:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return None
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @router.post("/account/passkeys/options")
    def register_options(request: Request) -> Response:
        viewer = frame.viewer(request)
        if viewer is None or not csrf_ok(viewer.session.csrf, request.headers.get("x-csrf-token")):
            return _refused(403, "sign in first")
        rp_id, _origin = party(request)
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=RP_NAME,
            user_name=viewer.email,
            user_id=str(viewer.driver_id).encode(),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=base64url_to_bytes(c))
                for c in store.of(viewer.driver_id)
            ],
        )
        ceremony = secrets.token_urlsafe(24)
        store.challenge(
            ceremony, "register", bytes_to_base64url(options.challenge), viewer.driver_id
        )
        return JSONResponse(
            {"ceremony": ceremony, "options": json.loads(options_to_json(options))},
            headers=page_headers(),
        )

    @router.post("/account/passkeys")
    async def register(request: Request) -> Response:
        viewer = await run_in_threadpool(frame.viewer, request)
        if viewer is None or not csrf_ok(viewer.session.csrf, request.headers.get("x-csrf-token")):
            return _refused(403, "sign in first")
        data = await body(request)
        if data is None:
            return _refused(400, "not a passkey answer")
        pending = await run_in_threadpool(
            store.take_challenge, str(data.get("ceremony", "")), "register"
        )
        if pending is None or pending[1] != viewer.driver_id:
            return _refused(400, "the request expired: try again")
        rp_id, origin = party(request)
        try:
            verified = verify_registration_response(
                credential=data.get("credential") or {},
                expected_challenge=base64url_to_bytes(pending[0]),
                expected_rp_id=rp_id,
                expected_origin=origin,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            return _refused(400, f"passkey not accepted: {exc}")
        added = await run_in_threadpool(
            store.add,
            Passkey(
                credential_id=bytes_to_base64url(verified.credential_id),
                driver_id=viewer.driver_id,
                public_key=bytes_to_base64url(verified.credential_public_key),
                sign_count=verified.sign_count,
            ),
        )
        if not added:
            return _refused(409, "this passkey is registered already")
        return JSONResponse({"ok": True}, headers=page_headers())

    @router.post("/account/passkeys/sign-in/options")
    def sign_in_options(request: Request) -> Response:
        if not pre_session_ok(request, request.headers.get("x-csrf-token")):
            return _refused(403, "the page expired: reload it")
        rp_id, _origin = party(request)
        options = generate_authentication_options(
            rp_id=rp_id, user_verification=UserVerificationRequirement.PREFERRED
        )
        ceremony = secrets.token_urlsafe(24)
        store.challenge(ceremony, "sign_in", bytes_to_base64url(options.challenge), None)
        return JSONResponse(
            {"ceremony": ceremony, "options": json.loads(options_to_json(options))},
            headers=page_headers(),
        )

    @router.post("/account/passkeys/sign-in")
    async def sign_in(request: Request) -> Response:
        if not pre_session_ok(request, request.headers.get("x-csrf-token")):
            return _refused(403, "the page expired: reload it")
        data = await body(request)
        credential = (data or {}).get("credential")
        if data is None or not isinstance(credential, dict):
            return _refused(400, "not a passkey answer")
        pending = await run_in_threadpool(
            store.take_challenge, str(data.get("ceremony", "")), "sign_in"
        )
        if pending is None:
            return _refused(400, "the request expired: try again")
        key = await run_in_threadpool(store.find, str(credential.get("id", "")))
        if key is None:
            return _refused(400, "this passkey is not known here")
        rp_id, origin = party(request)
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=base64url_to_bytes(pending[0]),
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=base64url_to_bytes(key.public_key),
                credential_current_sign_count=key.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            return _refused(400, f"passkey not accepted: {exc}")
        await run_in_threadpool(store.used, key.credential_id, verified.new_sign_count)
        response = JSONResponse({"next": "/account"}, headers=page_headers())
        await run_in_threadpool(frame.sessions.start, response, str(key.driver_id))
        return response

    return router
