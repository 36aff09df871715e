"""Mail formats without I/O: addresses, domain names, From, Received, HELO names, DMARC
records, DKIM verification, BATV, blocklist answers, consumer host names, access lists.
Checks may use these; they import nothing else of mxguard."""
