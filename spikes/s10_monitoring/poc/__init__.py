"""Spike 10 POC: the instrumented tabletop server, its instrumentation back ends, and local sinks."""
