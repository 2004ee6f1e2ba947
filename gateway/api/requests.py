"""The frame every terminal POST runs in: who is calling, then its idempotency key.

`run_idempotent` claims the key (scoped to the caller), replays a stored answer, refuses a
reused key (422) or a concurrent one (409 `in_progress`), runs the work, and stores the
answer in the transaction that records the work's effect. The money steps claim the key in
their own first transaction (the step's claim), so a request costs no transaction for its
key alone. Refusals found before any effect are stored too (the same request gets the same
answer); a transient refusal or an unanswered processor call stores nothing and unlocks the
key, so the retry works again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from gateway import wire
from gateway.api.identity import Caller, Identity
from gateway.ledger.idempotency import (
    Claim,
    Claimed,
    IdempotencyKeys,
    KeyRef,
    KeyTaken,
    RequestKey,
    StoredAnswer,
)
from gateway.payments.answers import Refusal, Unanswered, error_body

MAX_KEY_LENGTH = 128

# The work gets the request's key: `store` its answer in the transaction that records the
# effect; `resumed`, whether the key was left started by an earlier attempt (valid once the key
# is claimed); `claim` it in its first write when run with `claims=True`.
Work = Callable[[RequestKey], StoredAnswer]


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

    def caller_for(self, request: Request, terminal_id: str) -> Caller | JSONResponse:
        """The caller of a request made for `terminal_id` (named in its body or path), or the
        answer refusing it: as `caller`, and 403 `terminal_mismatch` when the certificate is
        another terminal's. It runs before the key is looked at or stored, so the key stays
        usable by its rightful sender. (In the development mode any terminal id is taken.)"""
        caller = self.caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        if caller.terminal is not None and caller.terminal != terminal_id:
            return error(403, "terminal_mismatch", "not the certificate's terminal")
        return caller

    def run_idempotent(
        self,
        caller: Caller,
        key: str,
        endpoint: str,
        body: wire.Strict,
        work: Work,
        *,
        claims: bool = False,
    ) -> JSONResponse:
        """Run `work` under the request's key. With `claims`, the work claims the key itself
        in its first write (`RequestKey.claim`, before anything else in that transaction);
        otherwise the key is claimed here first, in a transaction of its own."""
        if not key or len(key) > MAX_KEY_LENGTH:
            return error(400, "idempotency_key_required", "Idempotency-Key header")
        digest = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        request = RequestKey(self.keys, KeyRef(caller=caller.scope, key=key), endpoint, digest)
        try:
            if not claims:
                with self.keys.ledger.write() as conn:
                    request.claim(conn)
            answer = work(request)
        except KeyTaken as taken:
            return _taken(taken.claim)
        except Refusal as refusal:
            if refusal.transient:
                request.release()
                return error(refusal.status, refusal.code, refusal.message)
            answer = StoredAnswer(
                status_code=refusal.status, body=error_body(refusal.code, refusal.message)
            )
            # The transaction that claimed the key may have been undone with the refusal:
            # claim it again (found as its own if it was kept) and store the refusal with it.
            request.forget()
            return self._store_alone(request, answer)
        except Unanswered:
            request.release()
            return error(504, "processor_timeout", "processor did not answer")
        except BaseException:
            request.release()
            raise
        if request.stored is None:  # answered from the state, nothing written: store it alone
            return self._store_alone(request, answer)
        return JSONResponse(status_code=answer.status_code, content=answer.body)

    def _store_alone(self, request: RequestKey, answer: StoredAnswer) -> JSONResponse:
        """Store `answer` for the request's key in a transaction of its own (claiming the key
        there if the request has not yet), or answer for the key if it is not the request's."""
        with self.keys.ledger.write() as conn:
            try:
                request.claim(conn)
            except KeyTaken as taken:
                return _taken(taken.claim)
            request.store(conn, answer)
        return JSONResponse(status_code=answer.status_code, content=answer.body)


def _taken(claim: Claim) -> JSONResponse:
    """The answer for a key that is not the request's to work under."""
    if claim.outcome is Claimed.DONE:
        assert claim.answer is not None
        return JSONResponse(status_code=claim.answer.status_code, content=claim.answer.body)
    if claim.outcome is Claimed.MISMATCH:
        return error(422, "idempotency_key_reused", "key was used with a different request")
    return error(409, "in_progress", "a request with this key is being worked on")
