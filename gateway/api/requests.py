"""The frame every terminal POST runs in: who is calling, then its idempotency key.

`run_idempotent` claims the key (scoped to the caller), replays a stored answer, refuses a
reused key (422) or a concurrent one (409 `in_progress`), runs the work, and stores the
answer in the transaction that records the work's effect. Refusals found before any effect
are stored too (the same request gets the same answer); a transient refusal or an
unanswered processor call stores nothing and unlocks the key, so the retry works again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Connection

from gateway import wire
from gateway.api.identity import Caller, Identity
from gateway.ledger.idempotency import Claimed, IdempotencyKeys, KeyRef, StoredAnswer
from gateway.payments import Refusal, Unanswered, error_body

MAX_KEY_LENGTH = 128

# The work gets the function that stores its answer, and whether the key was resumed.
Work = Callable[[Callable[[Connection, StoredAnswer], None], bool], StoredAnswer]


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message))


def unauthenticated() -> JSONResponse:
    return error(401, "unauthenticated", "terminal routes need the terminal's certificate")


class TerminalRequests:
    """Identity and idempotency for terminal routes."""

    def __init__(self, identity: Identity, keys: IdempotencyKeys) -> None:
        self.identity = identity
        self.keys = keys

    def caller(self, request: Request) -> Caller | JSONResponse:
        """The caller, or the answer refusing the request (401, or 403 for a forwarded
        certificate that did not verify)."""
        caller = self.identity.caller(request)
        if caller is None:
            return unauthenticated()
        if caller.refused is not None:
            return error(403, "certificate_refused", caller.refused)
        return caller

    @staticmethod
    def named_terminal(caller: Caller, terminal_id: str) -> JSONResponse | None:
        """A body naming another terminal than the certificate's is refused (403) before the
        key is looked at or stored, so the key stays usable by its rightful sender."""
        if caller.terminal is None or caller.terminal == terminal_id:
            return None
        return error(403, "terminal_mismatch", "not the certificate's terminal")

    def run_idempotent(
        self, caller: Caller, key: str, endpoint: str, body: wire.Strict, work: Work
    ) -> JSONResponse:
        if not key or len(key) > MAX_KEY_LENGTH:
            return error(400, "idempotency_key_required", "Idempotency-Key header")
        digest = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        ref = KeyRef(caller=caller.scope, key=key)
        claim = self.keys.claim(ref, endpoint, digest)
        if claim.outcome is Claimed.DONE:
            assert claim.answer is not None
            return JSONResponse(status_code=claim.answer.status_code, content=claim.answer.body)
        if claim.outcome is Claimed.MISMATCH:
            return error(422, "idempotency_key_reused", "key was used with a different request")
        if claim.outcome is Claimed.IN_PROGRESS:
            return error(409, "in_progress", "a request with this key is being worked on")

        stored: list[StoredAnswer] = []

        def store(conn: Connection, answer: StoredAnswer) -> None:
            self.keys.store(conn, ref, answer)
            stored.append(answer)

        try:
            answer = work(store, claim.outcome is Claimed.RESUMED)
        except Refusal as refusal:
            if refusal.transient:
                self.keys.release(ref)
                return error(refusal.status, refusal.code, refusal.message)
            answer = StoredAnswer(
                status_code=refusal.status, body=error_body(refusal.code, refusal.message)
            )
            with self.keys.ledger.write() as conn:
                store(conn, answer)
        except Unanswered:
            self.keys.release(ref)
            return error(504, "processor_timeout", "processor did not answer")
        except BaseException:
            self.keys.release(ref)
            raise
        if not stored:  # answered from the state, nothing written: store the answer alone
            with self.keys.ledger.write() as conn:
                store(conn, answer)
        return JSONResponse(status_code=answer.status_code, content=answer.body)
