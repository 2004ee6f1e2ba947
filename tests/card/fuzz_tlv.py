"""Coverage-guided fuzzing of the BER-TLV parser, DOL parser and APDU decoders with atheris.

Not collected by pytest (the file name does not start with ``test_``). Run from the
repository root, with atheris installed::

    .venv/bin/python tests/card/fuzz_tlv.py -max_total_time=60

Any exception other than `TlvError` / `ApduError` is a finding.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from terminal.card.apdu import CommandApdu, ResponseApdu
    from terminal.card.dol import parse_dol
    from terminal.card.tlv import encode, parse
    from terminal.errors import ApduError, TlvError


def test_one_input(data: bytes) -> None:
    """One fuzz case: parsing either fails cleanly or round-trips."""
    try:
        objects = parse(data)
    except TlvError:
        pass
    else:
        assert parse(encode(objects)) == objects
    with contextlib.suppress(TlvError):
        parse_dol(data)
    try:
        ResponseApdu.decode(data)
        CommandApdu.decode(data)
    except ApduError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
