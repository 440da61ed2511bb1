"""What the hostile-frame battery (``harness/frames.py``) sends each option's relay, and how a valid message is told apart.

The relay (``poc/relay.py``) reads every frame, text or binary, as the option's message: OT's JSON arrays
(``["op", revision, operation]``, ``["hello", revision]``), the CRDT's kind byte and binary payload
(``U`` + update, ``S`` + state vector), LWW's JSON list of ``[field, value, stamp]`` writes. So the battery's
own unknown-type, type-not-string and wrong-field-types cases, built for ``{"type": ...}`` messages, are
replaced by the same hostility in each option's protocol; the others are sent as they are. The probe is a
valid message that the relay answers: an OT operation (acknowledged), a CRDT state vector (answered with the
update the client lacks), an LWW write (forwarded to a second connection: the relay answers no writer).
"""

from __future__ import annotations

import itertools
import json
import time

from harness import frames

__all__ = ["plan"]

_STANDARD = ("not-json", "json-array", "number", "null", "deep-nesting", "big-text", "bad-utf8", "binary", "fragmented")
_probes = itertools.count(1)


def _text(name: str, description: str, message: object) -> frames.HostileCase:
    return frames.HostileCase(name, description, "text", json.dumps(message))


def _binary(name: str, description: str, payload: bytes) -> frames.HostileCase:
    return frames.HostileCase(name, description, "binary", payload)


OWN_CASES: dict[str, list[frames.HostileCase]] = {
    "ot": [
        _text("unknown-type", 'an OT message of an unknown kind ["no-such-type", 0]', ["no-such-type", 0]),
        _text("type-not-string", "an OT message whose kind is a number", [12345, 0, []]),
        _text(
            "wrong-field-types", "an OT operation with a string revision and an object for the operation", ["op", "zero", {"not": "a list"}]
        ),
    ],
    "crdt": [
        _binary("unknown-type", "a CRDT message of an unknown kind byte (Z)", b"Z\x00"),
        # Text where the binary update belongs. (Some random bytes decode as an update Yrs keeps pending, and an update gets
        # no answer by design: that would not test the relay.)
        _binary("wrong-field-types", "an update (U) whose payload is text, not a Yjs update", b"U" + b"not an update"),
    ],
    "lww": [
        _text("type-not-string", "an LWW write whose field name is a number", [[12345, [1, 2], [1, 0, "x"]]]),
        _text(
            "wrong-field-types",
            "an LWW write whose stamp is a string, not [wall ms, counter, replica]",
            [["token/t0", [1, 2], "not-a-stamp"]],
        ),
    ],
}

LEFT_OUT = {
    "crdt": {"type-not-string": "a CRDT message's kind is one byte: there is no type field to give a number"},
    "lww": {"unknown-type": "an LWW message has one kind, a list of writes: there is no type to be unknown"},
}


async def _lww_probe(url: str) -> bool:
    """A fresh write reaches a second, fresh connection (the relay forwards writes that win to the other clients)."""
    from websockets.asyncio.client import connect

    n = next(_probes)
    value = [n, n]
    write = json.dumps([["token/frames-probe", value, [time.time_ns() // 1_000_000, n, "frames-probe"]]]).encode()
    async with connect(url, proxy=None) as listener, connect(url, proxy=None) as writer:
        await writer.send(write)
        while True:
            frame = await listener.recv()
            if any(w[0] == "token/frames-probe" and w[1] == value for w in json.loads(frame)):
                return True


def plan(option: str) -> frames.BatteryPlan:
    """The battery for one option's relay."""
    cases: list[frames.HostileCase | str] = [*_STANDARD, *OWN_CASES[option]]
    if option == "ot":
        probe: frames.Probe | frames.ProbeFn = frames.Probe(
            '["op",0,[["token","frames-probe",1.0,2.0]]]',
            expect=lambda f: bytes(f[:7] if isinstance(f, bytes) else f[:7].encode()) == b'["ack",',
        )
    elif option == "crdt":
        probe = frames.Probe(b"S\x00", expect=lambda f: isinstance(f, bytes) and f[:1] in (b"U", b"S"))
    else:
        probe = _lww_probe
    return frames.BatteryPlan(probe, cases=cases, left_out=LEFT_OUT.get(option, {}))
