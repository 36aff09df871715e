"""A DNS server object for dnspython that answers from records held in memory.

The self-test hands it to a :class:`~mxguard.dns.Resolver`, so the synthetic transaction's
questions take the same path as real ones (dnspython's resolver, its wire-format parser, our
typed answers) without a packet leaving the process.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Record = tuple[str, str, str]  # owner name, type, presentation data
TTL = 300
MAX_CHAIN = 8


class CannedServer(dns.nameserver.Nameserver):
    """Authoritative answers from ``records``: NXDOMAIN for a name with none, no data for a
    type the name lacks, CNAMEs followed within the records."""

    def __init__(self, records: Iterable[Record]) -> None:
        super().__init__()
        grouped: dict[tuple[dns.name.Name, int], list[str]] = {}
        for owner, rdtype, data in records:
            key = (dns.name.from_text(owner), dns.rdatatype.from_text(rdtype))
            grouped.setdefault(key, []).append(data)
        # Parsing the presentation form imports each record type's module, as real answers do.
        self._rrsets = {
            key: dns.rrset.from_text_list(key[0], TTL, dns.rdataclass.IN, key[1], texts)
            for key, texts in grouped.items()
        }
        self._names = {name for name, _ in self._rrsets}

    def __str__(self) -> str:
        return "canned"

    def kind(self) -> str:
        """What dnspython calls the transport."""
        return "Canned"

    def is_always_max_size(self) -> bool:
        """Answers are never truncated."""
        return True

    def answer_nameserver(self) -> str:
        """The server named in dnspython's answers and errors."""
        return "canned"

    def answer_port(self) -> int:
        """The port named in dnspython's answers and errors."""
        return 0

    def query(
        self,
        request: dns.message.QueryMessage,
        timeout: float,
        source: str | None,
        source_port: int,
        max_size: bool,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        """The answer to ``request``, parsed back from wire format as a real one would be."""
        response = dns.message.make_response(request)
        response.flags |= dns.flags.AA
        question = request.question[0]
        name = question.name
        for _ in range(MAX_CHAIN):
            rrset = self._rrsets.get((name, question.rdtype))
            if rrset is not None:
                response.answer.append(rrset)
                break
            alias = self._rrsets.get((name, dns.rdatatype.CNAME))
            if alias is None or question.rdtype == dns.rdatatype.CNAME:
                break
            response.answer.append(alias)
            name = alias[0].target
        if not response.answer and name not in self._names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return dns.message.from_wire(
            response.to_wire(),
            one_rr_per_rrset=one_rr_per_rrset,
            ignore_trailing=ignore_trailing,
        )

    async def async_query(self, *args: object, **kwargs: object) -> dns.message.Message:
        """Not used: mxguard's resolver is synchronous."""
        raise NotImplementedError
