"""The reporter: turns what the machine decided into the OCPP messages that must arrive.

It sees the executor's actions as they are performed, inside the executor's journal
transaction, so a TransactionEvent is queued in the same commit as the session record it
reports (E01-E07: Started when the hold is approved, Updated on charging-state changes, on a
new cost limit (C23 `LimitSet`), with the signed begin reading and with periodic meter values,
Ended with the final reading, the signed end reading and `costDetails`). Settlements (C19-C22
`NotifySettlement`) are queued by the sender thread in the same commit as the gateway's answer
to the capture or void, so their amounts are the gateway's.

Connector status (G01, B04): with `OCPPCommCtrlr.QueueAllMessages` true (the kiosk's default)
every change is queued in the journal like a transaction message, stamped with the time of
the step that made it, so a CSMS that was unreachable still receives each change in the order
it happened, interleaved with the transaction events as they happened. With it false only
transaction messages are queued (OCPP 2.1 "offline behaviour") and the client reports the
current status after a reconnect instead (B04.FR.01/02).

Each transaction's events carry `seqNo` 0, 1, 2 ... and `offline: true` when they happened
while the CSMS connection was down (OCPP 2.1 E04.FR.xx).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from hardware.clock import Clock
from terminal.core.actions import RequestAuthorization, TakeSignedReading
from terminal.core.billing import Bill
from terminal.core.events import MeterSampled
from terminal.core.kiosk import Charging, Kiosk, Suspended
from terminal.core.session import Card, CardKind, LocalStanding, Session
from terminal.money import Money
from terminal.ocpp import messages
from terminal.ocpp.queue import OcppQueue, TxRecord
from terminal.shell.journal import OutboxRow

log = logging.getLogger("ev_terminal.ocpp")

STARTED = "Started"
UPDATED = "Updated"
ENDED = "Ended"


@dataclass
class Settings:
    """Values the CSMS may change (SetVariables) and the daemon thread reads."""

    tx_updated_interval_ms: int
    heartbeat_interval_ms: int
    # OCPPCommCtrlr.QueueAllMessages: status changes go through the durable queue too.
    queue_all_messages: bool = True
    # OCPPCommCtrlr.OfflineThreshold: offline longer than this, the status of every connector
    # is reported on reconnect even if unchanged (B04.FR.01); only with QueueAllMessages off.
    offline_threshold_ms: int = 300_000
    # SecurityCtrlr.CertSigningWaitMinimum / CertSigningRepeatTimes (A02.FR.xx, A03): how
    # long to wait for CertificateSigned before asking again (doubled each time), how often.
    cert_signing_wait_minimum_ms: int = 3_600_000
    cert_signing_repeat_times: int = 3


class Reporter:
    def __init__(
        self,
        *,
        queue: OcppQueue,
        clock: Clock,
        evse: tuple[int, int],
        receipt_url: str,
        settings: Settings,
        online: Callable[[], bool] = lambda: False,
        on_status: Callable[[str], None] = lambda status: None,
        wake: Callable[[], None] = lambda: None,
        authorize: Callable[[RequestAuthorization], None] | None = None,
        start_paid: Callable[[RequestAuthorization], None] | None = None,
    ) -> None:
        self.authorize_with_csms = authorize  # set: the CSMS is the authority for RFID
        # Approves a session the CSMS started for a web payment it ran (C25).
        self.start_paid = start_paid
        self.queue = queue
        self.clock = clock
        self.evse = evse
        self.receipt_url = receipt_url.rstrip("/")
        self.settings = settings
        self.online = online
        self.on_status = on_status
        self.wake = wake
        self.status: str | None = None
        self.after_reset = False  # this start follows a CSMS's Reset
        self._sessions: dict[str, Session] = {}  # the last recorded, by the daemon thread
        self._last_periodic_ms: dict[str, int] = {}

    # -- helpers ----------------------------------------------------------------------------
    def _event(
        self, tx: TxRecord, session: Session, event_type: str, trigger: str, **fields: Any
    ) -> TxRecord:
        """Queue one TransactionEvent with the transaction's next seqNo; returns the record
        with its seqNo advanced (the caller saves it in the same transaction)."""
        payload = messages.transaction_event(
            event_type=event_type,
            trigger=trigger,
            session=session,
            seq_no=tx.next_seq_no,
            offline=not self.online(),
            at=fields.pop("at", None) or self.clock.now(),
            evse=self.evse,
            **fields,
        )
        self.queue.enqueue(
            "TransactionEvent", payload, transaction_id=session.session_id, at=self.clock.now()
        )
        return replace(tx, next_seq_no=tx.next_seq_no + 1)

    # -- from the executor (daemon thread, inside its journal transaction) -------------------
    def authorize(self, action: RequestAuthorization) -> bool:
        """An RFID token, with the CSMS as its authority: ask the CSMS (OCPP Authorize) and
        remember the session as the CSMS's to bill. True if it was taken here (then the
        gateway is not asked); a bank card always goes to the gateway."""
        if action.card.kind is CardKind.WEB and self.start_paid is not None:
            # Only the CSMS's start for a web payment it ran makes a web card at a tap (C25):
            # the CSMS's payment service holds the money and bills the transaction.
            self.queue.mark_csms_session(action.session_id)
            self.start_paid(action)
            return True
        if self.authorize_with_csms is None or action.card.kind is not CardKind.ID_TOKEN:
            return False
        self.queue.mark_csms_session(action.session_id)
        self.authorize_with_csms(action)
        return True

    def standing(self, card: Card, standing: LocalStanding) -> LocalStanding:
        """The CSMS's local authorization list (SendLocalList) beside the gateway's: an RFID
        token it lists as Accepted may start offline, any other status denies it."""
        if card.kind is not CardKind.ID_TOKEN:
            return standing
        status = self.queue.local_status(card.token)
        if status is None:
            return standing
        if status == "Accepted":
            return replace(standing, listed=True)
        return replace(standing, denied=True)

    def billed_by_csms(self, session_id: str) -> bool:
        """The CSMS authorized this session: it bills it from the transaction's costDetails,
        so there is nothing to capture or release at the gateway."""
        return self.queue.is_csms_session(session_id)

    def recorded(self, session: Session) -> None:
        """A session record was written: Started the first time it holds an approved
        amount, then Updated for a new charging state or a new cost limit."""
        self._sessions[session.session_id] = session
        tx = self.queue.transaction(session.session_id)
        state = messages.CHARGING_STATE[session.status]
        if tx is None:
            if session.authorized is None or session.status.settled:
                return  # no hold yet (or none at all): no OCPP transaction
            tx = TxRecord(
                transaction_id=session.session_id,
                next_seq_no=0,
                charging_state=state,
                max_cost_minor=session.authorized.minor,
                ended=False,
                pending_end=None,
            )
            remote = self.queue.remote_start(session.session_id)
            tx = self._event(
                tx,
                session,
                STARTED,
                "Authorized" if remote is None else "RemoteStart",
                charging_state=state,
                max_cost=session.authorized,
                at=session.started_at,
                remote=remote,
            )
            self.queue.save_transaction(tx)
            self.wake()
            return
        if tx.ended:
            return
        changed = tx
        if session.authorized is not None and session.authorized.minor != tx.max_cost_minor:
            # C23: an approved increment raised the cost limit.
            changed = self._event(
                changed, session, UPDATED, "LimitSet", max_cost=session.authorized
            )
            changed = replace(changed, max_cost_minor=session.authorized.minor)
        if state is not None and state != tx.charging_state:
            changed = self._event(
                changed, session, UPDATED, "ChargingStateChanged", charging_state=state
            )
            changed = replace(changed, charging_state=state)
        if changed != tx:
            self.queue.save_transaction(changed)
            self.wake()

    def settled_locally(self, session_id: str, bill: Bill | None) -> None:
        """The machine decided the capture (with its bill) or the void: the transaction
        ends. When a signed end reading follows in the same step, Ended waits for it."""
        session = self._sessions.get(session_id)
        tx = self.queue.transaction(session_id)
        if session is None or tx is None or tx.ended:
            return
        at = session.ended_at or self.clock.now()
        trigger, reason = messages.END.get(session.end_reason or "", messages.END_OTHER)
        if session.end_reason == "restart" and self.after_reset:
            trigger, reason = "ResetCommand", "ImmediateReset"  # B11: the CSMS reset it
        meter = []
        if session.start_register_wh is not None:
            meter.append(
                messages.meter_value(
                    at, session.start_register_wh + session.energy_wh, context="Transaction.End"
                )
            )
        payload = messages.transaction_event(
            event_type=ENDED,
            trigger=trigger,
            session=session,
            seq_no=0,  # numbered when queued
            offline=False,
            at=at,
            evse=self.evse,
            stopped_reason=reason,
            meter=meter or None,
            costs=messages.cost_details(session, bill, at),
        )
        tx = replace(tx, ended=True)
        if session.charging_started_at is not None and session.start_register_wh is not None:
            self.queue.save_transaction(replace(tx, pending_end=payload))
            return
        self._queue_end(tx, payload)

    def _queue_end(self, tx: TxRecord, payload: dict[str, Any], ocmf: str | None = None) -> None:
        payload = dict(payload, seqNo=tx.next_seq_no)
        payload.pop("offline", None)
        if not self.online():
            payload["offline"] = True
        if ocmf is not None and payload.get("meterValue"):
            energy = payload["meterValue"][0]["sampledValue"][0]
            energy["signedMeterValue"] = messages.signed_meter_value(ocmf)
        self.queue.enqueue(
            "TransactionEvent", payload, transaction_id=tx.transaction_id, at=self.clock.now()
        )
        self.queue.save_transaction(
            replace(tx, next_seq_no=tx.next_seq_no + 1, ended=True, pending_end=None)
        )
        self._sessions.pop(tx.transaction_id, None)
        self._last_periodic_ms.pop(tx.transaction_id, None)
        self.wake()

    def signed_reading(self, action: TakeSignedReading, ocmf: str | None) -> None:
        """An OCMF reading was signed (or could not be: `ocmf` None). The end reading goes
        into the waiting Ended event; the others are an Updated `SignedDataReceived`."""
        tx = self.queue.transaction(action.session_id)
        if tx is None:
            return
        if action.kind == "end":
            if tx.pending_end is not None:
                self._queue_end(tx, tx.pending_end, ocmf)
            return
        session = self._sessions.get(action.session_id)
        if tx.ended or session is None or ocmf is None:
            return
        context = "Transaction.Begin" if action.kind == "begin" else "Trigger"
        meter = messages.meter_value(
            action.at,
            action.register_wh,
            context=context,
            signed=messages.signed_meter_value(ocmf),
        )
        tx = self._event(tx, session, UPDATED, "SignedDataReceived", meter=[meter], at=action.at)
        self.queue.save_transaction(tx)
        self.wake()

    def flush_waiting_ends(self) -> None:
        """At start-up: an Ended left waiting for a signed reading that never came (the
        step that queued it was the last before a crash) is sent without it. Also notes
        whether this start follows a Reset from the CSMS."""
        self.after_reset = self.queue.take_reset()
        rows = self.queue.journal.execute(
            "SELECT transaction_id FROM ocpp_transactions WHERE pending_end IS NOT NULL"
        ).fetchall()
        for row in rows:
            tx = self.queue.transaction(row[0])
            if tx is not None and tx.pending_end is not None:
                with self.queue.journal.atomic():
                    self._queue_end(tx, tx.pending_end)

    def reported(self, kind: str, detail: str) -> None:
        """A04: a report of the machine that is a security event (start-up, a technician's
        login or failed login) is queued as SecurityEventNotification, in the executor's
        transaction. The start after a CSMS's Reset is `ResetOrReboot`."""
        event_type = messages.security_event_type(kind, detail)
        if event_type is None:
            return
        if kind == "started" and self.after_reset:
            event_type = messages.RESET_OR_REBOOT
        self.security_event(event_type, detail)

    def security_event(self, event_type: str, tech_info: str | None) -> None:
        """Queue one SecurityEventNotification (any thread; joins the caller's transaction)."""
        at = self.clock.now()
        payload = messages.security_event(event_type, at, tech_info)
        with self.queue.journal.atomic():
            self.queue.enqueue("SecurityEventNotification", payload, transaction_id=None, at=at)
        log.info("event=ocpp_security_event type=%s", event_type)
        self.wake()

    # -- from the daemon thread, after each step ---------------------------------------------
    def observe(self, kiosk: Kiosk, event: object) -> None:
        """The connector status after a step, and periodic meter values while charging
        (SampledDataCtrlr.TxUpdatedInterval)."""
        status = messages.connector_status(kiosk)
        if status != self.status:
            self.status = status
            if self.settings.queue_all_messages:
                at = getattr(event, "at", None) or self.clock.now()
                payload = messages.status_notification(status, at, self.evse)
                with self.queue.journal.atomic():
                    self.queue.enqueue(
                        "StatusNotification", payload, transaction_id=None, at=self.clock.now()
                    )
            self.on_status(status)
        if not isinstance(event, MeterSampled) or not isinstance(kiosk.phase, Charging | Suspended):
            return
        session = kiosk.phase.session
        last = self._last_periodic_ms.get(session.session_id)
        if last is not None and event.at_ms - last < self.settings.tx_updated_interval_ms:
            return
        self._last_periodic_ms[session.session_id] = event.at_ms
        if last is None:
            return  # the interval counts from the first sample
        with self.queue.journal.atomic():
            tx = self.queue.transaction(session.session_id)
            if tx is None or tx.ended:
                return
            meter = messages.meter_value(
                event.at, event.energy_wh, context="Sample.Periodic", power_w=event.power_w
            )
            tx = self._event(tx, session, UPDATED, "MeterValuePeriodic", meter=[meter], at=event.at)
            self.queue.save_transaction(tx)
        self.wake()

    # -- from the OCPP thread ----------------------------------------------------------------
    def triggered(self, kiosk: Kiosk) -> None:
        """TriggerMessage TransactionEvent (F06): an Updated with trigger `Trigger` and the
        meter's last register reading for the running transaction, numbered in its own
        commit (BEGIN IMMEDIATE: the daemon thread's events cannot take the same seqNo)."""
        session = kiosk.session
        if session is None:
            return
        at = self.clock.now()
        with self.queue.journal.atomic():
            tx = self.queue.transaction(session.session_id)
            if tx is None or tx.ended:
                return
            meter = None
            if kiosk.register_wh is not None:
                meter = [messages.meter_value(at, kiosk.register_wh, context="Trigger")]
            tx = self._event(
                tx,
                session,
                UPDATED,
                "Trigger",
                charging_state=tx.charging_state,
                meter=meter,
                at=at,
            )
            self.queue.save_transaction(tx)
        self.wake()

    # -- from the sender thread, inside its journal transaction ------------------------------
    def settlement(
        self,
        *,
        session_id: str,
        card_kind: str,
        status: str,
        amount: Money,
        receipt_id: str | None,
        status_info: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """C19-C22: NotifySettlement for a bank card's hold or a hold made on the web (an
        RFID token has no payment to settle)."""
        if card_kind not in (CardKind.PAYMENT.value, CardKind.WEB.value):
            return
        tx = self.queue.transaction(session_id)
        payload = messages.notify_settlement(
            psp_ref=session_id,
            status=status,
            amount=amount,
            at=at or self.clock.now(),
            tx_id=messages.transaction_id(session_id) if tx is not None else None,
            status_info=status_info,
            receipt_id=receipt_id,
            receipt_url=f"{self.receipt_url}/{receipt_id}" if receipt_id else None,
        )
        self.queue.enqueue(
            "NotifySettlement", payload, transaction_id=session_id, at=self.clock.now()
        )
        log.info("event=ocpp_settlement session=%s status=%s", session_id, status)
        self.wake()

    def gateway_settled(self, row: OutboxRow, outcome: str, answer: dict[str, Any]) -> None:
        """The sender's `on_settlement` hook: the gateway's answer to a capture or void, as
        C19-C22 settlement statuses. The settled amount is the one the gateway captured."""
        session = self.queue.journal.session_row(row.lane)
        if session is None:
            return
        kind, currency = session["card_kind"], session["currency"]
        receipt = row.body.get("receipt") if row.kind == "capture" else None
        receipt_id = receipt.get("receipt_id") if isinstance(receipt, dict) else None
        asked = row.body.get("amount")
        asked_money = (
            Money(int(asked["minor"]), currency)
            if isinstance(asked, dict)
            else Money.zero(currency)
        )
        if outcome == "done" and row.kind == "capture":
            captured = answer.get("amount_captured")
            amount = (
                Money(int(captured["minor"]), currency)
                if isinstance(captured, dict)
                else asked_money
            )
            self.settlement(
                session_id=row.lane,
                card_kind=kind,
                status="Settled",
                amount=amount,
                receipt_id=receipt_id,
            )
        elif outcome == "done":
            self.settlement(
                session_id=row.lane,
                card_kind=kind,
                status="Canceled",
                amount=Money.zero(currency),
                receipt_id=None,
                status_info="hold released",
            )
        elif outcome == "refused" and row.kind == "capture":
            self.settlement(
                session_id=row.lane,
                card_kind=kind,
                status="Rejected",
                amount=asked_money,
                receipt_id=receipt_id,
                status_info=f"refused: {answer.get('code')}",
            )
        elif outcome == "no_answer":
            self.settlement(
                session_id=row.lane,
                card_kind=kind,
                status="Failed",
                amount=asked_money,
                receipt_id=receipt_id,
                status_info=f"no answer from the payment gateway ({answer.get('error')}); retrying",
            )
