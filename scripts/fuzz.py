"""Fuzz every parser with a million mutated inputs: ``make fuzz``.

The contracts are the check functions of ``tests/fuzz`` (the property tests that ``make test``
runs with a few hundred hypothesis examples each); this script feeds them far more inputs,
made by mutating seed corpora from tests/data, ../shared/data and contrib with random.Random,
which is some twenty times faster than hypothesis' generation. Work is spread over the CPU
cores in chunks, each with its own seed derived from ``--seed``, so a run is repeatable.

Any exception a check lets out (a contract assertion, or an error type the parser does not
document) is a failure: the target, the exception and a repr of the input are printed, and
the exit status is 1.
"""

from __future__ import annotations

import argparse
import html
import multiprocessing
import os
import random
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests package holds the contracts

# The contracts, one module per target family; they import the mxguard modules themselves.
from tests.fuzz import test_fuzz_access as fuzz_access  # noqa: E402
from tests.fuzz import test_fuzz_address as fuzz_address  # noqa: E402
from tests.fuzz import test_fuzz_author as fuzz_author  # noqa: E402
from tests.fuzz import test_fuzz_batv as fuzz_batv  # noqa: E402
from tests.fuzz import test_fuzz_config as fuzz_config  # noqa: E402
from tests.fuzz import test_fuzz_dkim as fuzz_dkim  # noqa: E402
from tests.fuzz import test_fuzz_dmarc as fuzz_dmarc  # noqa: E402
from tests.fuzz import test_fuzz_headers as fuzz_headers  # noqa: E402
from tests.fuzz import test_fuzz_received as fuzz_received  # noqa: E402
from tests.fuzz.strategies import INTERESTING_CHARS  # noqa: E402

DATA_DIRS = [ROOT / "tests" / "data", ROOT.parent / "shared" / "data"]
DEFAULT_INPUTS = 1_000_000
CHUNK = 5_000
MAX_LENGTH = 20_000  # long enough to show quadratic behaviour, short enough to stay fast
FAILURES_KEPT = 5  # per chunk: the first few say what is wrong, the rest repeat it


# --------------------------------------------------------------------------- mutation


class Mutator:
    """Random edits of seed text: characters, tokens, spans, splices and repetitions.

    Bytes are mutated as latin-1 text, so one implementation serves both; in byte mode the
    random characters are single bytes or the UTF-8 encoding of an interesting character.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _char(self, binary: bool) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.45:
            char = rng.choice(INTERESTING_CHARS)
            if binary:
                return char.encode("utf-8", "surrogatepass").decode("latin-1")
            return char
        if binary:
            return chr(rng.randrange(256))
        if pick < 0.75:
            return chr(rng.randrange(0x20, 0x7F))
        if pick < 0.9:
            return chr(rng.randrange(0x80, 0x800))
        # Anything, lone surrogates and astral characters included.
        return chr(rng.randrange(0x110000))

    def mutate(self, text: str, seeds: Sequence[str], tokens: Sequence[str], binary: bool) -> str:
        """One random edit of ``text``."""
        rng = self.rng
        size = len(text)
        where = rng.randint(0, size)
        span = min(size - where, int(rng.expovariate(0.3)) + 1)
        op = rng.randrange(10)
        if op == 0:
            return text[:where] + self._char(binary) + text[where:]
        if op == 1 and tokens:
            return text[:where] + rng.choice(tokens) + text[where:]
        if op == 2:
            return text[:where] + text[where + span :]
        if op == 3:
            insert = rng.choice(tokens) if tokens and rng.random() < 0.5 else self._char(binary)
            return text[:where] + insert + text[where + span :]
        if op == 4:
            # Repetition: mostly a few copies, now and then hundreds (deep nesting, long runs).
            count = rng.randint(2, 4) if rng.random() < 0.9 else rng.randint(50, 2000)
            return text[:where] + text[where : where + span] * count + text[where:]
        if op == 5:
            other = rng.choice(seeds)
            return text[:where] + other[rng.randint(0, len(other)) :]
        if op == 6:
            # ASCII only: in byte mode the swapped case of a latin-1 letter may not be latin-1.
            piece = "".join(c.swapcase() if c.isascii() else c for c in text[where : where + span])
            return text[:where] + piece + text[where + span :]
        if op == 7:
            return text[:where]
        if op == 8:
            other = rng.choice(seeds)
            start = rng.randint(0, len(other))
            return text[:where] + other[start : start + rng.randint(1, 40)] + text[where:]
        return text[:where] + "".join(self._char(binary) for _ in range(span)) + text[where:]

    def text(self, seeds: Sequence[str], tokens: Sequence[str] = (), binary: bool = False) -> str:
        """A seed with a few random edits (or, now and then, random characters only)."""
        rng = self.rng
        if rng.random() < 0.03 or not seeds:
            return "".join(self._char(binary) for _ in range(rng.randint(0, 60)))
        text = rng.choice(seeds)
        for _ in range(1 + min(12, int(rng.expovariate(0.6)))):
            text = self.mutate(text, seeds, tokens, binary)
        return text[:MAX_LENGTH]

    def bytes(self, seeds: Sequence[str], tokens: Sequence[str] = ()) -> bytes:
        """Like text(), for seeds and tokens given as latin-1 text."""
        return self.text(seeds, tokens, binary=True).encode("latin-1")


def latin1(items: Sequence[bytes]) -> list[str]:
    """Byte seeds as the latin-1 text the Mutator edits."""
    return [item.decode("latin-1") for item in items]


# --------------------------------------------------------------------------- corpora


def data_files(pattern: str) -> list[Path]:
    """Files matching ``pattern`` under every data directory that exists."""
    found: list[Path] = []
    for directory in DATA_DIRS:
        if directory.is_dir():
            found.extend(sorted(directory.glob(pattern)))
    return found


def isemail_addresses() -> list[str]:
    """The addresses of the isemail and pyIsEmail test suites."""
    found: set[str] = set()
    for path in data_files("address/*.xml"):
        for raw in re.findall(r"<address>(.*?)</address>", path.read_text(errors="replace")):
            text = html.unescape(raw)
            # The suites write control character N as U+2400 + N (XML cannot hold them).
            found.add(
                "".join(chr(ord(c) - 0x2400) if 0x2400 <= ord(c) < 0x2420 else c for c in text)
            )
    return sorted(found)


def messages() -> list[bytes]:
    """Whole messages: the DKIM test messages and the Mail::DKIM corpus."""
    paths = (
        data_files("dkim/*.msg")
        + data_files("dkim/*.message")
        + data_files("dkim/mail-dkim/corpus/*.txt")
    )
    return [path.read_bytes()[:MAX_LENGTH] for path in paths]


def field_values(corpus: Sequence[bytes], name: bytes) -> list[bytes]:
    """The values of every field called ``name`` in the corpus, as the MTA hands them over."""
    values = []
    for message in corpus:
        fields, _body = fuzz_dkim.split_fields(message)
        values.extend(value for field_name, value in fields if field_name.lower() == name)
    return values


def fake_dns() -> dict[str, fuzz_dkim.Answer]:
    """Key records of the Mail::DKIM corpus and the RFC 8463 zone, as fake lookup answers."""
    answers: dict[str, fuzz_dkim.Answer] = dict(fuzz_dkim.KEYS)
    for path in data_files("dkim/mail-dkim/FAKE_DNS.dat"):
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, _, record = line.partition(" ")
            record = record.strip()
            if record == "NXDOMAIN":
                answers[name.lower()] = ()
            elif record.startswith("~~"):
                answers[name.lower()] = None  # a timeout or SERVFAIL
            else:
                answers[name.lower()] = (record.strip('"').encode(),)
    for path in data_files("dkim/*.zone"):
        answers.update(fuzz_dkim.zone(path))
    return answers


def dmarc_vectors() -> dict[str, list[str]]:
    """The OpenDMARC vectors' first column, by section."""
    sections: dict[str, list[str]] = {}
    current = ""
    for path in data_files("dmarc/opendmarc_vectors.tsv"):
        for line in path.read_text().splitlines():
            if line.startswith("["):
                current = line[1 : line.index("]")]
            elif line and not line.startswith("#"):
                sections.setdefault(current, []).append(line.split("\t")[0])
    return sections


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One family of parsers: how to make an input, and the contract check it goes through."""

    name: str
    weight: float  # share of the inputs; the slow targets get fewer
    make: Callable[[random.Random, Mutator], tuple[Any, ...]]
    check: Callable[..., None]
    check_name: str = field(default="")


def build_targets() -> dict[str, Target]:
    """Every target with its seeds loaded (in the parent process, before the workers fork)."""
    corpus = messages()
    addresses = [*isemail_addresses(), *fuzz_address.SEEDS]
    address_tokens = list(fuzz_address.TOKENS)

    received_seeds = [
        value.decode("utf-8", "replace").lstrip(" \t")
        for value in field_values(corpus, b"received")
    ] + list(fuzz_received.SEEDS)

    vectors = dmarc_vectors()
    from_values = field_values(corpus, b"from") + list(fuzz_author.SEED_BYTES)
    from_values += [
        b" " + value.encode("utf-8", "surrogatepass") for value in vectors.get("finddomain", [])
    ]
    from_values += [f" Fuzz <{a}>".encode("utf-8", "surrogatepass") for a in addresses[::3]]
    from_seeds = latin1(from_values)
    author_tokens = latin1([token.encode() for token in fuzz_author.TOKENS])

    split = [fuzz_dkim.split_fields(message) for message in corpus]
    field_seeds = [fields for fields, _body in split if fields]
    names = latin1(sorted({name for fields in field_seeds for name, _ in fields}))
    values = latin1([value for fields in field_seeds for _, value in fields])
    bodies = latin1([body[:2000] for _fields, body in split])

    signed = [*fuzz_dkim.SIGNED, *corpus]
    signed_seeds = latin1(signed)
    signatures = latin1(field_values(signed, b"dkim-signature"))
    dkim_tokens = latin1(
        [
            b";",
            b"=",
            b"\r\n",
            b"\r\n ",
            b"DKIM-Signature:",
            b"d=",
            b"s=",
            b"a=",
            b"b=",
            b"bh=",
            b"h=",
            b"l=",
            b"c=relaxed/relaxed",
        ]
    )
    answers = fake_dns()
    records = latin1([record for answer in answers.values() if answer for record in answer])
    key_tokens = latin1(
        [b";", b"=", b"k=rsa", b"k=ed25519", b"p=", b"v=DKIM1", b"h=sha1", b"t=s", b"s=*", b"g=*"]
    )

    dmarc_records = [*vectors.get("dmarc_parse", []), *fuzz_dmarc.SEEDS]
    dmarc_tokens = list(fuzz_dmarc.TOKENS)
    author_domains = list(fuzz_dmarc.AUTHOR_DOMAINS) + [
        domain
        for domain in vectors.get("organizational domain via PSL", [])
        if domain.isascii() and domain == domain.lower() and domain
    ]
    other_domains = list(fuzz_dmarc.OTHER_DOMAINS) + vectors.get("alignment", [])

    ini_seeds = [path.read_text() for path in [ROOT / "contrib" / "mxguard.ini"] if path.exists()]
    by_section: dict[str, list[str]] = {}
    for section, name, default in fuzz_config.SCHEMA:
        by_section.setdefault(section, []).append(f"{name} = {default}")
    ini_seeds += [
        f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in by_section.items()
    ]
    ini_values = list(fuzz_config.VALUES)
    ini_tokens = [
        "\n",
        "[",
        "]",
        "=",
        ":",
        ";",
        "#",
        "\n  ",
        ",",
        "\x00",
        "\ud800",
        *ini_values[:20],
    ]

    access_lines = list(fuzz_access.LINES)
    access_seeds = [
        path.read_text() for path in [ROOT / "contrib" / "access.example"] if path.exists()
    ]
    access_tokens = list(fuzz_access.TOKENS)

    batv_seeds = list(fuzz_batv.SEEDS) + [
        fuzz_batv.tagged(a, 20_000 + i, 7) for i, a in enumerate(addresses)
    ]
    batv_tokens = list(fuzz_batv.TOKENS)

    def make_address(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        text = mut.text(addresses, address_tokens)
        if rng.random() < 0.5:
            text = f"<{text}>"
        return text, rng.random() < 0.3, rng.random() < 0.7

    def make_received(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        return (mut.text(received_seeds, fuzz_received.TOKENS),)

    def make_author(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        count = 1 if rng.random() < 0.9 else rng.choice((0, 2, 3))
        return ([mut.bytes(from_seeds, author_tokens) for _ in range(count)],)

    def check_author(values: list[bytes]) -> None:
        fuzz_author.check_author(values)
        if values:
            domain = values[0].decode("utf-8", "replace").rpartition("@")[2].strip(" >")
            fuzz_author.check_normalise_domain(domain)

    def make_headers(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        fields = list(rng.choice(field_seeds))
        for _ in range(rng.randint(1, 4)):
            index = rng.randrange(len(fields) + 1)
            name = mut.bytes(names) if rng.random() < 0.3 else rng.choice(names).encode("latin-1")
            fields.insert(index, (name, mut.bytes(values)))
            if rng.random() < 0.3 and fields:
                del fields[rng.randrange(len(fields))]
        lookup = rng.choice(names).encode("latin-1").decode("utf-8", "replace")
        return fields, mut.bytes(bodies), mut.text([lookup]) if rng.random() < 0.3 else lookup

    def make_tags(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        return (mut.bytes(signatures, dkim_tokens),)

    def make_verify(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        choice = rng.random()
        served: dict[str, fuzz_dkim.Answer] = {}
        fallback: fuzz_dkim.Answer = ()
        if choice < 0.55:
            # A mutated message checked against the real keys: reaches hashing and RSA.
            message, served = mut.bytes(signed_seeds, dkim_tokens), answers
        else:
            # A real signed message against a mutated key record, served for every name.
            message = rng.choice(signed)
            if choice < 0.95:
                count = rng.choice((1, 1, 1, 2))  # two records at one name: a permerror
                fallback = tuple(mut.bytes(records, key_tokens) for _ in range(count))
            else:
                fallback = rng.choice((None, ()))
        return message, served, fallback, rng.random() < 0.5, rng.choice((512, 1024, 2048))

    def make_record(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        return (mut.text(dmarc_records, dmarc_tokens),)

    def check_record(text: str) -> None:
        fuzz_dmarc.check_parse_record(text)
        fuzz_dmarc.check_is_dmarc_record(text)

    def make_policy(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        answers_in_turn: list[list[str] | None] = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.1:
                answers_in_turn.append(None)
            else:
                answers_in_turn.append(
                    [
                        mut.text(dmarc_records, dmarc_tokens)
                        for _ in range(rng.choice((0, 1, 1, 1, 2)))
                    ]
                )
        spf = [
            mut.text(other_domains) if rng.random() < 0.5 else rng.choice(author_domains)
            for _ in range(rng.randint(0, 2))
        ]
        dkim = [
            mut.text(other_domains) if rng.random() < 0.5 else rng.choice(author_domains)
            for _ in range(rng.randint(0, 2))
        ]
        return rng.choice(author_domains), answers_in_turn, spf, dkim, rng.randrange(100)

    def make_config(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        if rng.random() < 0.4:
            return (mut.text(ini_seeds, ini_tokens),)
        lines = []
        for _ in range(rng.randint(1, 5)):
            section, name, _default = rng.choice(fuzz_config.SCHEMA)
            value = (
                rng.choice(ini_values) if rng.random() < 0.3 else mut.text(ini_values, ini_tokens)
            )
            lines.append(f"[{section}]\n{name} = {value}")
        return ("\n".join(lines) + "\n",)

    def make_access(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        if access_seeds and rng.random() < 0.1:
            return (mut.text(access_seeds, access_tokens),)
        return ("\n".join(mut.text(access_lines, access_tokens) for _ in range(rng.randint(1, 6))),)

    def make_batv(rng: random.Random, mut: Mutator) -> tuple[Any, ...]:
        if rng.random() < 0.8:
            secrets = fuzz_batv.SECRETS
        else:
            # Secrets come from the UTF-8 INI file: no lone surrogates.
            secrets = tuple(
                mut.text(list(fuzz_batv.SECRETS)).encode("utf-8", "replace").decode("utf-8")
                for _ in range(rng.randint(0, 3))
            )
        return (
            mut.text(batv_seeds, batv_tokens),
            secrets,
            rng.randint(19_000, 23_000),
            rng.randint(-5, 1200),
        )

    targets = [
        Target("address", 14, make_address, fuzz_address.check_all),
        Target("received", 11, make_received, fuzz_received.check_parse),
        Target("author", 11, make_author, check_author),
        Target("headers", 9, make_headers, fuzz_headers.check_message),
        Target("dkim-tags", 8, make_tags, fuzz_dkim.check_signature_tags),
        Target("dkim-verify", 9, make_verify, fuzz_dkim.check_verify),
        Target("dmarc-record", 10, make_record, check_record),
        Target("dmarc-policy", 6, make_policy, fuzz_dmarc.check_policy),
        Target("config", 8, make_config, fuzz_config.check_load),
        Target("accesslist", 9, make_access, fuzz_access.check_all),
        Target("batv", 5, make_batv, fuzz_batv.check_batv),
    ]
    for target in targets:
        target.check_name = f"{target.check.__module__}.{target.check.__qualname__}"
    return {target.name: target for target in targets}


# --------------------------------------------------------------------------- running


class InputTimeout(Exception):
    """One input took longer than --timeout: a hang or super-linear behaviour."""


@dataclass
class Failure:
    """One input that broke a contract."""

    target: str
    error: str
    where: str
    input: str
    chunk_seed: str


@dataclass
class ChunkResult:
    """What one chunk of one target did."""

    target: str
    inputs: int
    failures: int
    kept: list[Failure]
    seconds: float
    slowest: float


_TARGETS: dict[str, Target] = {}
_TIMEOUT = 10.0


def _on_alarm(signum: int, frame: Any) -> None:
    raise InputTimeout(f"input took longer than {_TIMEOUT:g}s")


def _init_worker(timeout: float) -> None:
    global _TIMEOUT
    _TIMEOUT = timeout
    signal.signal(signal.SIGALRM, _on_alarm)
    # Ctrl-C goes to the parent, which stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _where(error: BaseException) -> str:
    """The innermost frame of the traceback, to tell one bug from another."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def run_chunk(job: tuple[str, str, int]) -> ChunkResult:
    """Run ``count`` inputs of one target with the RNG seeded from ``chunk_seed``."""
    name, chunk_seed, count = job
    target = _TARGETS[name]
    rng = random.Random(chunk_seed)
    mutator = Mutator(rng)
    failures, kept, slowest = 0, [], 0.0
    started = time.perf_counter()
    for _ in range(count):
        args = target.make(rng, mutator)
        before = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, _TIMEOUT)
        try:
            target.check(*args)
        except Exception as error:  # every escape is a finding, whatever its type
            failures += 1
            if len(kept) < FAILURES_KEPT:
                text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
                kept.append(Failure(name, text[:2000], _where(error), repr(args), chunk_seed))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - before)
    return ChunkResult(name, count, failures, kept, time.perf_counter() - started, slowest)


def plan(targets: Sequence[Target], total: int, seed: int) -> list[tuple[str, str, int]]:
    """Split ``total`` inputs over the targets by weight, in chunks of at most CHUNK."""
    weights = sum(target.weight for target in targets)
    jobs = []
    remaining = total
    for index, target in enumerate(targets):
        share = remaining if index == len(targets) - 1 else round(total * target.weight / weights)
        remaining -= share
        for number, start in enumerate(range(0, share, CHUNK)):
            jobs.append((target.name, f"{seed}:{target.name}:{number}", min(CHUNK, share - start)))
    # The slow targets first, so the cores are not left waiting on one at the end.
    order = {target.name: target.weight for target in targets}
    jobs.sort(key=lambda job: order[job[0]])
    return jobs


def report(results: dict[str, ChunkResult], wall: float, jobs: int) -> None:
    """The per-target table."""
    columns = ("inputs", 10), ("failures", 9), ("cpu s", 8), ("inputs/s", 9), ("slowest ms", 11)
    print(f"{'target':<14}" + "".join(f" {title:>{width}}" for title, width in columns))
    total = failures = 0
    cpu = 0.0
    for name, result in results.items():
        rate = result.inputs / result.seconds if result.seconds else 0.0
        print(
            f"{name:<14} {result.inputs:>10,} {result.failures:>9} {result.seconds:>8.1f}"
            f" {rate:>9,.0f} {result.slowest * 1000:>11.1f}"
        )
        total += result.inputs
        failures += result.failures
        cpu += result.seconds
    print(f"{'total':<14} {total:>10,} {failures:>9} {cpu:>8.1f}")
    print(f"wall time {wall:.1f}s on {jobs} processes")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fuzzer; 0 when every input kept to its contract, 1 otherwise."""
    global _TARGETS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=DEFAULT_INPUTS, help="total inputs")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--target", action="append", help="only this target (repeatable)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    args = parser.parse_args(argv)

    _TARGETS = build_targets()
    chosen = args.target or list(_TARGETS)
    unknown = [name for name in chosen if name not in _TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}; choose from {', '.join(_TARGETS)}")
    targets = [_TARGETS[name] for name in chosen]
    jobs = plan(targets, args.inputs, args.seed)
    print(f"fuzzing {args.inputs:,} inputs over {len(targets)} targets, seed {args.seed}")

    results = {t.name: ChunkResult(t.name, 0, 0, [], 0.0, 0.0) for t in targets}
    kept: list[Failure] = []
    started = time.perf_counter()
    # fork: the workers inherit the loaded corpora and the imported parsers.
    context = multiprocessing.get_context("fork")
    with context.Pool(args.jobs, initializer=_init_worker, initargs=(args.timeout,)) as pool:
        for chunk in pool.imap_unordered(run_chunk, jobs):
            total = results[chunk.target]
            total.inputs += chunk.inputs
            total.failures += chunk.failures
            total.seconds += chunk.seconds
            total.slowest = max(total.slowest, chunk.slowest)
            kept.extend(chunk.kept)
    wall = time.perf_counter() - started

    report(results, wall, args.jobs)
    if not kept:
        return 0
    print(f"\n{sum(r.failures for r in results.values())} inputs broke a contract:")
    seen: set[tuple[str, str, str]] = set()
    for failure in kept:
        key = (failure.target, failure.error.partition(":")[0], failure.where)
        if key in seen:
            continue  # the same exception at the same place: one example is enough
        seen.add(key)
        check = _TARGETS[failure.target].check_name
        print(f"\n[{failure.target}] {failure.error}")
        print(f"  at {failure.where} (chunk {failure.chunk_seed})")
        print(f"  reproduce: {check}(*{failure.input})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
