"""The HTTP activity feed: its protocol, defined once here, and the load engine's SSE and long-polling clients.

Importing this package registers with the load engine the client adapters
``sse`` (:class:`harness.feed.sse.SSEClient`) and ``longpoll``
(:class:`harness.feed.longpoll.LongPollClient`) and the resume adapters
``last-event-id`` (:class:`harness.feed.resume.LastEventIdResume`, for
those two) and ``last-seq-epoch``
(:class:`harness.feed.resume.LastSeqEpochResume`, for the engine's
WebSocket clients ``ws`` and ``ws-websockets`` against a feed server)::

    import harness.feed  # noqa: F401 - registers the adapters

    # LoadSpec, ReconnectPolicy and run_load: the load engine's
    run_load(LoadSpec(url="http://127.0.0.1:8080", transport="sse", mode="broadcast", senders=1,
                      connections=100, reconnect=ReconnectPolicy(), resume="last-event-id"))

The protocol
------------

Every transport carries the load engine's protocol messages (its
``protocol`` module): JSON objects with ``op``. A feed server keeps, per
room, a history ring buffer of the last H broadcasts, each numbered with
``n`` (1, 2, ... per room) in the server's epoch ``e`` (see Epoch below;
the object is the sent broadcast plus ``n`` and ``e``). ``{base}`` is the
feed's base URL, ``http://host:port`` or with a path prefix; clients append
``/send``, ``/sse`` and ``/poll``.

Publish (SSE and long polling; WebSocket publishes over its socket)
    ``POST {base}/send`` with one protocol message (op ``broadcast`` with
    ``room``, ``seq``, ``t``, ``c``, ``d``) as JSON -> ``200
    {"op": "ack", "c": C, "seq": S, "n": N, "e": E}``; the broadcast goes to every
    member of the room. A body that is not a JSON object, or a wrong op or
    field type -> ``400 {"op": "error", "error": "..."}`` (never a
    traceback).

Server-sent events
    ``GET {base}/sse?room=R`` (header ``Last-Event-ID: E-N``, or query
    ``last_event_id=E-N`` for clients that cannot set headers) ->
    ``text/event-stream`` with headers ``Cache-Control: no-store`` and
    ``X-Accel-Buffering: no``. First event: ``event: joined`` + ``data:
    {"op": "joined", "room": R, "n": HEAD, "e": E}`` (with ``id: E-HEAD``).
    Each broadcast: ``id: E-N`` + ``data: <json>``. A keep-alive comment
    line ``: ka`` every ``keepalive_s`` (a server option). Resume with
    Last-Event-ID E-N: the server sends ``joined``, then every held
    broadcast with n > N in order, then live ones. The id is text the
    client sends back as it got it (EventSource does, with no code of the
    page's).

Long polling
    ``GET {base}/poll?room=R&cursor=E-N&hold_s=T`` -> ``200 {"events":
    [...], "cursor": "E-M"}``: held up to T seconds (the server caps it)
    until at least one broadcast with n > N exists; returns them all, in
    order, and the new cursor. Without ``cursor`` it answers at once
    ``{"op": "joined", "room": R, "n": HEAD, "e": E, "events": [], "cursor":
    "E-HEAD"}``. The client polls again at once with the returned cursor
    (text: the client does no arithmetic on it), so nothing between polls
    is lost.

WebSocket
    ``{base}/ws`` (``ws://``), the load protocol as in
    the load engine's reference server with ``--numbered``: a join with
    ``"after": N, "epoch": E`` resumes (``last-seq-epoch``); ``"after": N``
    alone (the engine's ``last-seq``) resumes under the old rules.

Bad resume point (all three transports)
    A Last-Event-ID or cursor that is neither ``E-N`` (E: 1 to 32 letters,
    digits or ``_``; N: decimal digits) nor a plain N, an ``after`` that is
    not a non-negative integer, an ``epoch`` that is not such an E: SSE and
    long polling answer ``400 {"op": "error", "error": "..."}``, WebSocket
    sends ``{"op": "error", ...}`` and closes with 1008. One of another
    epoch (the server restarted), older than the history kept, or in the
    future (N > HEAD): a ``reset`` event or message ``{"op": "reset",
    "room": R, "n": HEAD, "e": E, "reason": "epoch" | "history" |
    "future"}`` telling the client to reload in full, then the stream
    continues from HEAD (SSE: the reset carries the id ``E-HEAD`` and the
    ``joined`` before it none, so a client cut between the two gets the
    reset again; long polling: the reset is one of the poll's events and
    the cursor is ``E-HEAD``). Never a crash, never a silent gap.

Epoch
    Each feed server process draws an epoch at start (8 random hex digits,
    not the start time: a clock set back, or two starts in one millisecond,
    must not give a restarted server its old epoch) and every numbered
    message carries it as ``e`` beside ``n``; a resume point of another
    epoch always gets a reset with reason ``epoch``, whatever its N, so a
    restarted server that has already numbered past N cannot answer as if
    nothing happened (Centrifugo's epoch per stream, per server here: a
    room's numbering never restarts within a process). A resume point with
    no epoch (a plain N: a hand-written client, or the engine's ``last-seq``
    on a WebSocket) is still taken, under the old rules: such a client
    cannot see a restart unless N > HEAD. Taken rather than refused with a
    400 because the WebSocket join must take it anyway (``last-seq``
    cannot change) and one rule serves the three transports; a client that
    has seen an epoch never sends a plain N (it sends back the id or cursor
    it got, and long polling answers a plain cursor with an ``E-M`` one).

How the clients meet the engine
-------------------------------

Broadcast mode only: the feed has no echo, so an echo message is refused
with ``ValueError`` (the engine tells an adapter nothing of the mode before
its first send). The engine's ``join`` opens the stream (SSE) or makes the
joining poll (long polling), since the room is part of the URL; a
reconnecting client whose resume adapter already knows its room and resume
point opens in ``connect`` instead, so a server that is down fails the
connect at once (not the join's timeout), and holds what arrives until the
engine's join. The engine records a connect time for first connections
only, and there ``connect`` does no I/O: a feed's ``connect_ms`` measures
nothing; the stream's opening is in the join.

Each received event (the JSON of an SSE ``data:``, each element of a
poll's ``events``) goes to ``on_message``, ``joined`` and ``reset``
included. A broadcast is POSTed in a task (one at a time per client by
default, so a sender's order holds; later ones wait without slowing the
sender, ``FeedClient.post_concurrency``) and its ``200`` ack goes to
``on_message`` as the ack (an ack is not a delivery); an error answer goes
there as ``{"op": "error", "status": ...}`` (counted as unexpected), and a
POST that got no answer at all ends the client (``on_close``). The stream
or the polls ending, an error status or a failed request end the client
too, once, with a short stable reason. Bytes are counted at the transport:
every request's and response's headers and body, chunked framing included,
the stream's opening too (a WebSocket's upgrade is not counted, its join
is: a feed's opening stands for both).

A ``reset`` reaches the engine like any message, whatever its reason
(``epoch`` too): the engine's account (its ``account`` module, keyed on
each sender's ``c`` and ``seq``) counts it as an *unexpected* arrival (it
names no message), one per reset, and the broadcasts the client never got
as *lost* (after acknowledgement, as a rule: their sender had its ack).
The client also counts its resets (``resets``, and by reason in
``reset_reasons``), and so do the resume adapters, which resume from the
reset's HEAD in the reset's epoch. The adapters keep ``n`` and ``e`` as a
pair from one message (:class:`harness.feed.resume.FeedPosition`).
"""

from __future__ import annotations

from harness.load.clients import register
from harness.load.clients.resume import register_resume

__all__ = ["SSE", "LONGPOLL", "LAST_EVENT_ID", "LAST_SEQ_EPOCH"]

#: The transport and resume adapter names this package registers.
SSE = "sse"
LONGPOLL = "longpoll"
LAST_EVENT_ID = "last-event-id"
LAST_SEQ_EPOCH = "last-seq-epoch"

register(SSE, "harness.feed.sse:SSEClient")
register(LONGPOLL, "harness.feed.longpoll:LongPollClient")
register_resume(LAST_EVENT_ID, "harness.feed.resume:LastEventIdResume")
register_resume(LAST_SEQ_EPOCH, "harness.feed.resume:LastSeqEpochResume")
register("sse-h2", "harness.feed.h2:SSEH2Client")
register("longpoll-h2", "harness.feed.h2:LongPollH2Client")
