"""Render the documented sample INI and the README's option reference from the schema.

``python -m mxguard.tools.docgen`` rewrites ``contrib/mxguard.ini``, ``man/mxguard.ini.5`` and the
reference part of ``README.rst``; a test fails when any of them is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mxguard.core.config import sections
from mxguard.core.options import specs

BEGIN = ".. BEGIN GENERATED OPTION REFERENCE (python -m mxguard.tools.docgen)"
END = ".. END GENERATED OPTION REFERENCE"


def render_ini() -> str:
    """The sample INI: every section and option, each with its doc, at its default."""
    lines = [
        "; mxguard configuration: every option, shown at its default.",
        "; Copy it (cp contrib/mxguard.ini /etc/mxguard/mxguard.ini) and edit the copy: set",
        "; [milter] hostnames, local_domains and socket; delete what you leave at its default.",
        "; This file is generated from the schema (python -m mxguard.tools.docgen).",
        "; Lists are comma-separated; booleans are yes/no/true/false/on/off/1/0;",
        "; durations take s/m/h/d; networks are CIDR (IPv4 or IPv6).",
    ]
    for name, (cls, doc) in sections().items():
        lines += ["", f"; {doc}", f"[{name}]"]
        for spec in specs(cls):
            lines.append(f"; {spec.described} [{spec.kind.name}]")
            lines.append(f"{spec.name} = {spec.default_text}".rstrip())
    return "\n".join(lines) + "\n"


def render_reference() -> str:
    """The option reference as reStructuredText, between the README's markers."""
    lines = [BEGIN, ""]
    for name, (cls, doc) in sections().items():
        title = f"[{name}]"
        lines += [title, "~" * len(title), "", doc[0].upper() + doc[1:] + ".", ""]
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 20 25 55", ""]
        lines += ["   * - option", "     - default", "     - meaning"]
        for spec in specs(cls):
            default = f"``{spec.default_text}``" if spec.default_text else "(empty)"
            lines += [
                f"   * - ``{spec.name}``",
                f"     - {default}",
                f"     - {spec.described}. Takes {spec.kind.expected}.",
            ]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def _roff(text: str) -> str:
    """Text as a roff line: backslashes and hyphens escaped, no leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def render_man_ini() -> str:
    """mxguard.ini(5): the file format and every option with its default and meaning."""
    lines = [
        '.TH MXGUARD.INI 5 "2026-11-23" "mxguard 0.1.0" "File Formats Manual"',
        '.\\" Generated from the schema by python -m mxguard.tools.docgen; do not edit by hand.',
        ".SH NAME",
        "mxguard.ini \\- configuration of the mxguard milter",
        ".SH DESCRIPTION",
        "One INI file, by default",
        ".IR /etc/mxguard/mxguard.ini .",
        "Lists are comma\\-separated; booleans are yes/no/true/false/on/off/1/0; durations take",
        "s/m/h/d; networks are CIDR (IPv4 or IPv6). Every check has its own section with",
        ".B enabled",
        "and",
        ".B mode",
        "(enforce or monitor; empty: the [milter] mode). An unknown section or option, or a",
        "value of the wrong kind, stops startup with the file, section, option and what was",
        "expected. Send SIGUSR1 to reload.",
    ]
    for name, (cls, doc) in sections().items():
        lines += [".SH " + _roff(f"[{name}]"), _roff(doc[0].upper() + doc[1:] + ".")]
        for spec in specs(cls):
            default = spec.default_text or "(empty)"
            lines += [".TP", f".B {_roff(spec.name)}", _roff(f"= {default}")]
            lines += [".br", _roff(f"{spec.described}. Takes {spec.kind.expected}.")]
    lines += [".SH SEE ALSO", ".BR mxguard (8)"]
    return "\n".join(lines) + "\n"


def splice_reference(readme: str) -> str:
    """``readme`` with the text between the markers replaced by the current reference."""
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + render_reference() + readme[end:]


def main(root: str = ".") -> int:
    """Rewrite contrib/mxguard.ini and the README reference under ``root``."""
    base = Path(root)
    (base / "contrib" / "mxguard.ini").write_text(render_ini(), encoding="utf-8")
    (base / "man" / "mxguard.ini.5").write_text(render_man_ini(), encoding="utf-8")
    readme = base / "README.rst"
    readme.write_text(splice_reference(readme.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
