"""The scenarios of Spike 9: each runs one repeat for one codec and returns what it measured."""

from __future__ import annotations

from harness.plugin import ScenarioContext, ScenarioOutput

from .battery import run_battery
from .bench import deflate_message, deflate_stream, encode_all, roundtrip_ok, time_per_op, zlib_size
from .codecs import CODECS
from .debugging import debug_facts
from .messages import MESSAGE_KINDS, sample, stream

__all__ = [
    "SIZE_PARAMS",
    "SIZE_QUICK",
    "SPEED_PARAMS",
    "SPEED_QUICK",
    "run_size",
    "run_speed",
    "run_type_safety",
    "run_debugging",
    "BROWSER_PARAMS",
    "BROWSER_QUICK",
    "run_browser",
]

SIZE_PARAMS = {"stream_messages": 1000}
SIZE_QUICK = {"stream_messages": 200}
SPEED_PARAMS = {"samples": 15, "sample_s": 0.02, "warmup_s": 0.1}
SPEED_QUICK = {"samples": 5, "sample_s": 0.003, "warmup_s": 0.02}
#: The browser bench: the mixed stream's first ``stream_messages``, ``rounds`` samples per figure, each a loop of ``round_ms``.
BROWSER_PARAMS = {"stream_messages": 1000, "rounds": 7, "round_ms": 15, "warmup_ms": 500}
BROWSER_QUICK = {"stream_messages": 200, "rounds": 3, "round_ms": 10, "warmup_ms": 100}


def run_size(ctx: ScenarioContext) -> ScenarioOutput:
    """Bytes per message: raw, zlib, deflate per message, and over a stream with one deflate context."""
    codec, out = CODECS[ctx.option.key], ScenarioOutput()
    kinds = (*MESSAGE_KINDS, "mixed")
    for i, kind in enumerate(kinds):
        if kind != "mixed":
            data = encode_all(codec, [sample(kind)])[0]
            out.add("size_raw", "bytes", [len(data)], message=kind)
            out.add("size_zlib", "bytes", [zlib_size(data)], message=kind)
            out.add("size_deflate_msg", "bytes", [len(deflate_message(data))], message=kind)
        payloads = encode_all(codec, stream(kind, ctx.params["stream_messages"]))
        n = len(payloads)
        out.add("size_raw_stream", "bytes", [sum(map(len, payloads)) / n], message=kind)
        out.add("size_deflate_stream", "bytes", [sum(map(len, deflate_stream(payloads))) / n], message=kind)
        ctx.advance((i + 1) / len(kinds))
    return out


def run_speed(ctx: ScenarioContext) -> ScenarioOutput:
    """Encode and decode time per message kind, in ns per operation."""
    codec, out = CODECS[ctx.option.key], ScenarioOutput()
    timing = {k: ctx.params[k] for k in ("samples", "sample_s", "warmup_s")}
    roundtrips = {}
    for i, kind in enumerate(MESSAGE_KINDS):
        native = codec.to_native(sample(kind))
        data = codec.encode(native)
        out.add("encode_ns", "ns/op", time_per_op(codec.encode, native, **timing), message=kind)
        # Decode all the way to the app's dict: protobuf builds its Python values lazily, on first
        # read, so timing FromString alone would skip most of its work while the others do all of theirs.
        out.add("decode_ns", "ns/op", time_per_op(lambda d: codec.from_native(codec.decode(d)), data, **timing), message=kind)
        roundtrips[kind] = roundtrip_ok(codec, sample(kind))
        ctx.advance((i + 1) / len(MESSAGE_KINDS))
    out.facts["roundtrip_ok"] = roundtrips
    return out


def run_type_safety(ctx: ScenarioContext) -> ScenarioOutput:
    """The battery of bad inputs through this codec's decoder."""
    cases = run_battery(CODECS[ctx.option.key])
    rejected = sum(c["rejected"] for c in cases)
    out = ScenarioOutput(facts={"cases": cases})
    out.add("rejected_fraction", "fraction", [rejected / len(cases)], better="higher")
    out.add("rejected", "cases", [rejected], better=None)
    out.add("cases_total", "cases", [len(cases)], better=None)
    ctx.advance(1.0)
    return out


def run_debugging(ctx: ScenarioContext) -> ScenarioOutput:
    """Debugging facts of this codec's format; the count of true ones is the measurement."""
    facts = debug_facts(CODECS[ctx.option.key])
    out = ScenarioOutput(facts=facts)
    # Whether a CLI decoder is installed is a fact about this machine, not the format: shown, not scored.
    scored = {k: f for k, f in facts.items() if k != "cli_decoder_on_path"}
    out.add("debug_facts_true", "facts", [sum(f["value"] for f in scored.values())], better="higher")
    out.add("debug_facts_total", "facts", [len(scored)], better=None)
    ctx.advance(1.0)
    return out


def run_browser(ctx: ScenarioContext) -> ScenarioOutput:
    """Decode and encode of the option's wire bytes in Chromium, with the library the page would use, and its bundle bytes."""
    from . import browser_bench as bb

    family = bb.BROWSER_LIBRARY[ctx.option.key]
    sizes = bb.library_sizes()[family]  # builds the bundles first (cached), before any browser starts
    ctx.advance(0.2)
    messages = stream("mixed", ctx.params["stream_messages"])
    timing = {"rounds": ctx.params["rounds"], "roundMs": ctx.params["round_ms"], "warmupMs": ctx.params["warmup_ms"]}
    page = bb.run_browser_bench(ctx.option.key, messages, timing)
    data = page.data
    out = ScenarioOutput()
    for kind, r in data["results"].items():
        out.add("browser_decode_ns", "ns/message", r["decode_ns"], message=kind)
        out.add("browser_encode_ns", "ns/message", r["encode_ns"], message=kind)
        out.add("browser_messages", "messages", [r["messages"]], better=None, message=kind)
    out.add("bundle_gzip_bytes", "bytes", [sizes["gzip_bytes"]])
    out.add("bundle_min_bytes", "bytes", [sizes["min_bytes"]])
    out.facts.update(
        {
            "library": bb.LIBRARIES[family]["title"],
            "family": family,
            "packages": bb.package_versions(family),
            "roundtrip": data["roundtrip"],
            "roundtrip_ok": all(r["from_python"] == r["own"] == r["messages"] for r in data["roundtrip"].values()),
            "clock_step_us": data["clock_step_us"],
            "cross_origin_isolated": data["cross_origin_isolated"],
            "browser": page.to_dict(),
            "browser_label": page.label(),
            "sizes_extra": {k: v for k, v in sizes.items() if k not in ("gzip_bytes", "min_bytes")},
        }
    )
    ctx.advance(1.0)
    return out
