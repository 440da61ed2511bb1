"""Operating-system knobs the generator needs: file-descriptor limit, CPU pinning, loopback checks."""

from __future__ import annotations

import ipaddress
import resource
from urllib.parse import urlsplit

__all__ = ["raise_nofile_limit", "is_loopback_host", "check_loopback_url"]


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (every connection is a descriptor); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit for descriptors; nr_open is the real ceiling.
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except OSError:
            target = max(soft, 1 << 20)
    else:
        target = hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_url(url: str, allow_remote: bool = False) -> None:
    """Raise ``ValueError`` unless ``url`` points at this machine (or ``allow_remote`` is set)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}; use ws://, wss://, http:// or https://")
    if allow_remote or is_loopback_host(parts.hostname):
        return
    raise ValueError(
        f"refusing to send load to {parts.hostname!r}: the load engine only targets servers on this machine "
        "(localhost, 127.0.0.0/8, ::1); set allow_remote=True (--allow-remote) for a server of your own elsewhere"
    )
