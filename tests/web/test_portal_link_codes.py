"""Linking a card or RFID token on the portal with the one-time code a kiosk showed after the
tap (both back-ends): the code links the card it was issued for; a wrong, expired or used
code is refused with one answer and links nothing; a card linked to another driver stays
theirs; guesses are rate-limited with the receipt proofs; the form needs its CSRF token."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gateway.web.portal import NO_CODE
from tests.web.console_app import ConsoleApp, form_token
from tests.web.generate import Generator
from tests.web.mail_sink import Sink
from tests.web.test_portal import portal, signed_in_driver

__all__ = ["portal"]  # the fixture, shared with test_portal.py


def kiosk_code(app: ConsoleApp, authorization_id: str, key: str) -> str:
    """What the kiosk asks for when its receipt screen is up (the development mode's gateway
    takes any terminal's request)."""
    answer = app.client().post(
        "/v1/link-codes",
        json={"terminal_id": "SIM-0001", "authorization_id": authorization_id},
        headers={"Idempotency-Key": key},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["code"])


def link_by_code(client: TestClient, code: str, label: str = "") -> Any:
    page = client.get("/account/cards").text
    return client.post(
        "/account/cards/code",
        data={"csrf": form_token(page), "code": code, "label": label},
        follow_redirects=False,
    )


def cards_of(client: TestClient) -> str:
    return client.get("/account/cards").text


def test_the_code_a_kiosk_showed_links_the_tapped_card(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    session = gen.session(app.clock.now, currency="EUR", token="tok-card-of-dana-01")
    last4 = app.built.ledger.fetch(session).card_last4  # type: ignore[union-attr]
    code = kiosk_code(app, session, "k-1")
    dana = signed_in_driver(app, sink, "dana@example.org")
    # Typed as people type it: lower case, grouped, O for 0 and I or L for 1 (Crockford).
    typed = f"{code[:4]}-{code[4:]}".lower().replace("0", "o").replace("1", "l")
    linked = link_by_code(dana, typed)
    assert linked.status_code == 303, linked.text
    page = cards_of(dana)
    assert f'data-card="Card {last4}"' in page
    assert f'data-session="{session}"' in dana.get("/account").text
    # Used once: the same code again links nothing and says what a wrong code says.
    again = link_by_code(dana, code)
    assert again.status_code == 400
    assert NO_CODE in again.text


def test_an_rfid_token_is_linked_by_its_code_and_named(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    session = gen.session(
        app.clock.now, currency="EUR", kind="id_token", token="tok-rfid-of-dana", last4=""
    )
    code = kiosk_code(app, session, "k-1")
    dana = signed_in_driver(app, sink, "dana@example.org")
    assert link_by_code(dana, code, label="Fleet tag").status_code == 303
    page = cards_of(dana)
    assert 'data-card="Fleet tag"' in page
    assert "RFID token" in page


def test_wrong_expired_and_replaced_codes_are_refused_alike(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    session = gen.session(app.clock.now, currency="EUR", token="tok-card-of-dana-01")
    dana = signed_in_driver(app, sink, "dana@example.org")
    code = kiosk_code(app, session, "k-1")
    wrong = "ZZZZZZZZ" if code != "ZZZZZZZZ" else "YYYYYYYY"
    answers = [link_by_code(dana, typed) for typed in (wrong, "12345", "not a code!")]
    app.clock.advance(minutes=5)
    answers.append(link_by_code(dana, code))  # expired
    first = kiosk_code(app, session, "k-2")
    kiosk_code(app, session, "k-3")  # the same card tapped again: the new code replaces it
    answers.append(link_by_code(dana, first))
    assert [a.status_code for a in answers] == [400] * 5
    assert all(NO_CODE in a.text for a in answers)
    assert "No card or token is linked to your account yet." in cards_of(dana)


def test_a_card_linked_to_another_driver_stays_theirs(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    session = gen.session(app.clock.now, currency="EUR", token="tok-card-of-dana-01")
    dana = signed_in_driver(app, sink, "dana@example.org")
    erin = signed_in_driver(app, sink, "erin@example.org")
    assert link_by_code(dana, kiosk_code(app, session, "k-1")).status_code == 303
    # Erin read Dana's code off the kiosk too late: used.
    taken = link_by_code(erin, kiosk_code(app, session, "k-2"))
    assert taken.status_code == 409
    assert "This card is linked to another account." in taken.text
    assert "No card or token is linked to your account yet." in cards_of(erin)
    assert erin.get(f"/account/sessions/{session}").status_code == 404
    assert dana.get(f"/account/sessions/{session}").status_code == 200


def test_code_guesses_are_rate_limited_with_the_receipt_proofs(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    session = gen.session(app.clock.now, currency="EUR", token="tok-card-of-dana-01")
    dana = signed_in_driver(app, sink, "dana@example.org")
    statuses = [link_by_code(dana, f"GUESS{n:03d}").status_code for n in range(10)]
    assert statuses == [400] * 10
    # The eleventh attempt in the hour is refused even with the right code.
    code = kiosk_code(app, session, "k-1")
    assert link_by_code(dana, code).status_code == 429
    assert "No card or token is linked to your account yet." in cards_of(dana)
    app.clock.advance(hours=1, seconds=1)
    assert link_by_code(dana, kiosk_code(app, session, "k-2")).status_code == 303


def test_the_code_form_needs_its_csrf_token_and_a_signed_in_driver(
    portal: tuple[ConsoleApp, Sink, Generator],
) -> None:
    app, sink, gen = portal
    session = gen.session(app.clock.now, currency="EUR", token="tok-card-of-dana-01")
    code = kiosk_code(app, session, "k-1")
    nobody = app.client().post("/account/cards/code", data={"code": code}, follow_redirects=False)
    assert nobody.status_code == 403
    dana = signed_in_driver(app, sink, "dana@example.org")
    forged = dana.post("/account/cards/code", data={"code": code}, follow_redirects=False)
    assert forged.status_code == 403
    # Neither spent the code.
    assert link_by_code(dana, code).status_code == 303
