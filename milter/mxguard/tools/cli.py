"""The command line: ``mxguard run`` and ``mxguard check-config``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

from mxguard import __version__
from mxguard.core import config
from mxguard.core.errors import ConfigError
from mxguard.daemon import logsetup
from mxguard.daemon.statedir import with_usable_state

EXIT_CONFIG = 2
# What a shell reports for a command that SIGPIPE ended (``mxguard check-config | head``).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

log = logging.getLogger("mxguard")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxguard", description="A milter that refuses abusive mail at SMTP time."
    )
    parser.add_argument("--version", action="version", version=f"mxguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the milter in the foreground"),
        ("check-config", "validate the configuration and print the effective settings"),
        ("doctor", "check Postfix's milter settings and the socket against this configuration"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "-c",
            "--config",
            default=config.DEFAULT_PATH,
            metavar="FILE",
            help=f"the INI file (default {config.DEFAULT_PATH})",
        )
        if name == "check-config":
            output = command.add_mutually_exclusive_group()
            output.add_argument(
                "-n",
                "--changed",
                action="store_true",
                help="only the settings that differ from the defaults (like postconf -n)",
            )
            output.add_argument(
                "-q",
                "--quiet",
                action="store_true",
                help="print nothing unless the file is invalid (for systemd's ExecReload)",
            )
        if name == "doctor":
            command.add_argument(
                "--postfix-config",
                metavar="DIR",
                help="Postfix's config_directory (default: postconf's own, /etc/postfix)",
            )
    return parser


def check_config(settings: config.Settings, changed: bool = False, quiet: bool = False) -> int:
    """Print the effective settings as INI (with ``changed`` only those that differ from the
    defaults), then the warnings and a summary line as comments; with ``quiet``, nothing.
    Data files (access lists, patterns) are loaded too, and their problems logged with file
    and line."""
    from mxguard.core.pipeline import Pipeline

    logsetup.configure("warning")
    Pipeline(settings.ordered_checks(), source=settings.path)
    if quiet:
        return 0
    try:
        for line in _settings_lines(settings, changed):
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader has all it wanted (``| head``): stop quietly, as tools that SIGPIPE ends.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    return 0


def _settings_lines(settings: config.Settings, changed: bool) -> Iterator[str]:
    """The lines of check-config: the sections, the warnings as comments, the summary last."""
    for section, values in config.effective_values(settings, changed).items():
        yield f"[{section}]"
        for name, value in values.items():
            yield f"{name} = {value}".rstrip()
        yield ""
    warnings = settings.warnings()
    for warning in warnings:
        yield f"; warning: {warning}"
    yield summary(settings, len(warnings))


def summary(settings: config.Settings, warnings: int = 0) -> str:
    """One comment line: the file is valid, which checks run, which lack the settings to act,
    and which only log and tag (monitor mode)."""
    enabled = settings.ordered_checks()
    names = [check.name for check, _ in enabled]
    idle = [c.name for c, s in enabled if not c.active_stages(s) and not c.observers]
    monitored = [check.name for check, checked in enabled if checked.monitor]
    valid = f"valid, {warnings} warning{'s' * (warnings != 1)} above" if warnings else "valid"
    parts = [
        f"; {settings.path}: {valid}",
        f"{len(names)} check{'s' * (len(names) != 1)} enabled ({', '.join(names)})",
    ]
    if idle:
        parts.append(f"idle until configured: {', '.join(idle)}")
    if monitored and len(monitored) == len(names):
        parts.append("in monitor mode: all")
    else:
        parts.append(f"in monitor mode: {', '.join(monitored) or 'none'}")
    return "; ".join(parts)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit does not fail
    on the closed pipe again ("Exception ignored ... BrokenPipeError")."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file (a test's capture): nothing is left to flush at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)


def trusted_note(milter: config.MilterSettings) -> str:
    """The start-up line that says whose mail skips the inbound checks, and how to see them
    judge a client all the same from this host (whose loopback address is trusted)."""
    if not milter.trusted_networks:
        return "[milter] trusted_networks is empty: every client gets the inbound checks"
    networks = ", ".join(str(network) for network in milter.trusted_networks)
    return (
        f"[milter] trusted_networks = {networks}: mail from these clients skips the inbound "
        "checks; to try them from this host, have Postfix pass an outside client's address "
        "with XCLIENT (README: Trying it from the MTA host)"
    )


def run(settings: config.Settings) -> int:
    """Configure logging and serve until stopped."""
    from mxguard.daemon.server import serve  # libmilter is only needed to serve

    logsetup.configure(settings.log.level, settings.log.target, settings.log.facility)
    for warning in settings.warnings():
        log.warning("%s", warning)
    settings = with_usable_state(settings)
    log.info("mxguard %s starting with %s", __version__, settings.path)
    log.info("%s", trusted_note(settings.milter))
    return serve(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mxguard`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = config.load(args.config)
        if args.command == "check-config":
            return check_config(settings, changed=args.changed, quiet=args.quiet)
        if args.command == "doctor":
            from mxguard.tools import doctor

            try:
                values = doctor.postconf(args.postfix_config)
            except doctor.PostconfError as error:
                return doctor.report(
                    [
                        doctor.Finding(
                            False,
                            str(error),
                            "is Postfix installed and configured? (--postfix-config DIR)",
                        )
                    ]
                )
            return doctor.report(doctor.diagnose(settings, values))
        return run(settings)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
