"""Start libmilter: register the callbacks, open the socket, drop privileges, serve, reload."""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
import signal
import socket
import threading

import Milter

import milter

from . import config, metrics, sockets
from .adapter import MxguardMilter
from .errors import ConfigError
from .runtime import RuntimeHolder, build_runtime
from .statedir import give_to, with_usable_state

log = logging.getLogger("mxguard")

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

# Header edits, the envelope edits of BATV (sender rewriting, tagged recipients), and the
# quarantine that [dmarc] quarantine_action = quarantine asks for.
ACTIONS = (
    milter.ADDHDRS
    | milter.CHGHDRS
    | milter.CHGFROM
    | milter.ADDRCPT
    | milter.DELRCPT
    | milter.QUARANTINE
)


def _register_callbacks(holder: RuntimeHolder) -> None:
    """Point libmilter's callbacks at a fresh MxguardMilter per connection."""
    Milter.factory = lambda: MxguardMilter(holder)
    milter.set_flags(ACTIONS)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, name: ctx.getpriv().hello(name))
    milter.set_envfrom_callback(lambda ctx, *args: ctx.getpriv().envfrom_bytes(*args))
    milter.set_envrcpt_callback(lambda ctx, *args: ctx.getpriv().envrcpt_bytes(*args))
    milter.set_header_callback(lambda ctx, name, value: ctx.getpriv().header_bytes(name, value))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.register(
        "mxguard",
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


MAX_PACKET = 1 << 20


def _raise_packet_limit() -> None:
    """Let libmilter accept commands up to 1 MB instead of 64 KB.

    Postfix passes a header field of up to header_size_limit (100 KB by default) in one
    command; at libmilter's default limit such a field ends the milter session with an error,
    and the MTA falls back to milter_default_action instead of getting our verdict. pymilter
    does not wrap smfi_setmaxdatasize, but its extension module exports it.
    """
    try:
        library = ctypes.CDLL(milter.__file__)
        set_size = library.smfi_setmaxdatasize
    except (OSError, AttributeError):
        log.warning("libmilter has no smfi_setmaxdatasize: commands over 64 KB are refused")
        return
    set_size.restype = ctypes.c_size_t
    set_size.argtypes = [ctypes.c_size_t]
    set_size(MAX_PACKET)


def _disable_nagle(socket_spec: str) -> None:
    """Set TCP_NODELAY on libmilter's listening TCP socket; accepted connections inherit it.

    libmilter writes each header edit as its own small packet; with Nagle's algorithm the
    second one waits for the MTA's delayed ACK (up to 40 ms per message). pymilter has no call
    for this, so the listening socket is found among our file descriptors by its address.
    """
    kind, _, rest = socket_spec.partition(":")
    if kind not in ("inet", "inet6"):
        return
    port = int(rest.partition("@")[0])
    for name in os.listdir("/proc/self/fd"):
        try:
            candidate = socket.socket(fileno=int(name))
        except OSError:
            continue  # not a socket
        try:
            if (
                candidate.type == socket.SOCK_STREAM
                and candidate.family
                in (
                    socket.AF_INET,
                    socket.AF_INET6,
                )
                and candidate.getsockname()[1] == port
            ):
                candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
        except OSError:
            continue
        finally:
            candidate.detach()  # the descriptor stays libmilter's
    log.warning("could not set TCP_NODELAY on %s: expect ~40 ms per message", socket_spec)


def account(user: str) -> tuple[int, int] | None:
    """(uid, gid) of ``[milter] user`` when running as root, else None; ConfigError if the
    user does not exist."""
    if not user:
        return None
    if os.geteuid() != 0:
        if pwd.getpwuid(os.geteuid()).pw_name != user:  # systemd's User= did it already
            log.warning("[milter] user = %s ignored: not running as root", user)
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"[milter] user: expected an existing user, got {user!r}") from None
    return entry.pw_uid, entry.pw_gid


def drop_privileges(user: str, owner: tuple[int, int] | None) -> None:
    """Become ``user``, with its primary and supplementary groups (setgroups, setgid, setuid)."""
    if owner is None:
        return
    uid, gid = owner
    groups = os.getgrouplist(user, gid)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    log.info("running as %s (groups %s)", user, ",".join(grp.getgrgid(g).gr_name for g in groups))


def notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state, when it started us; else nothing."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as channel:
            channel.sendto(state.encode(), address)
    except OSError as error:
        log.warning("systemd notification %r failed: %s", state, error)


def _reload_loop(path: str, holder: RuntimeHolder) -> None:
    """Wait for SIGUSR1 and swap in the new configuration; keep the old one if it is invalid."""
    while True:
        signal.sigwait({signal.SIGUSR1})
        notify("RELOADING=1")
        try:
            settings = with_usable_state(config.load(path))
        except ConfigError as error:
            metrics.RELOADS.labels("refused").inc()
            log.error("reload refused, keeping the running configuration:\n%s", error)
            notify("READY=1\nSTATUS=reload refused: the configuration is invalid")
            continue
        current = holder.current
        resolver = current.resolver if settings.dns == current.settings.dns else None
        holder.replace(build_runtime(settings, resolver))
        if resolver is None:
            current.resolver.close()
        metrics.RELOADS.labels("ok").inc()
        log.info("configuration reloaded from %s", path)
        notify("READY=1\nSTATUS=configuration reloaded")


def serve(settings: config.Settings) -> int:
    """Run the milter until libmilter stops (SIGTERM/SIGINT)."""
    runtime = build_runtime(settings)
    holder = RuntimeHolder(runtime)
    # Block these before any thread starts: SIGUSR1 is for the reload thread's sigwait, and
    # SIGTERM/SIGINT/SIGHUP for libmilter's own signal thread, which stops the milter cleanly.
    # Unblocked in any other thread, they would kill the process with their default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {signal.SIGUSR1})
    threading.Thread(
        target=_reload_loop, args=(settings.path, holder), name="mxguard-reload", daemon=True
    ).start()
    _register_callbacks(holder)
    _raise_packet_limit()
    spec = sockets.usable_spec(settings.milter.socket)
    try:
        owner = account(settings.milter.user)
        created = sockets.prepare(spec)
    except ConfigError as error:
        log.error("%s: %s", settings.path, error)
        return 2
    milter.setconn(spec)
    milter.settimeout(int(settings.milter.timeout))
    try:
        milter.opensocket(False)  # a stale file is gone already; a live one stopped us above
    except milter.error:
        log.error("cannot open the milter socket %s (in use, or no permission?)", spec)
        return 1
    sockets.finish(spec, owner, created)
    give_to(settings.state.url, owner)
    _disable_nagle(spec)
    drop_privileges(settings.milter.user, owner)
    log.info("listening on %s", spec)
    metrics.start(settings.metrics.port)
    notify(f"READY=1\nSTATUS=listening on {spec}")
    milter.main()
    notify("STOPPING=1")
    log.info("stopped")
    return 0
