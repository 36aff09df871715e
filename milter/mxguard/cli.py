"""The command line: ``mxguard run`` and ``mxguard check-config``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import __version__, config, logsetup
from .errors import ConfigError
from .statedir import with_usable_state

EXIT_CONFIG = 2

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
        if name == "doctor":
            command.add_argument(
                "--postfix-config",
                metavar="DIR",
                help="Postfix's config_directory (default: postconf's own, /etc/postfix)",
            )
    return parser


def check_config(settings: config.Settings) -> int:
    """Print the effective settings as INI, with warnings as comments; data files (access
    lists, patterns) are loaded too, and their problems logged with file and line."""
    from .pipeline import Pipeline

    logsetup.configure("warning")
    Pipeline(settings.ordered_checks())
    for warning in settings.warnings():
        print(f"; warning: {warning}")
    for section, values in config.effective_values(settings).items():
        print(f"[{section}]")
        for name, value in values.items():
            print(f"{name} = {value}".rstrip())
        print()
    return 0


def run(settings: config.Settings) -> int:
    """Configure logging and serve until stopped."""
    from .server import serve  # libmilter is only needed to serve

    logsetup.configure(settings.log.level, settings.log.target, settings.log.facility)
    for warning in settings.warnings():
        log.warning("%s", warning)
    settings = with_usable_state(settings)
    log.info("mxguard %s starting with %s", __version__, settings.path)
    return serve(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mxguard`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = config.load(args.config)
        if args.command == "check-config":
            return check_config(settings)
        if args.command == "doctor":
            from . import doctor

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
