"""The machinery of bench/run.py, one responsibility per module.

- ``protocol``: the milter protocol as the MTA speaks it (packets, negotiation, replies).
- ``workload``: the client, the messages and their DKIM key.
- ``plan``: a workload compiled for one milter's negotiation.
- ``client``: what a client process is given and what it reports back.
- ``session`` and ``driver``: the client, one selector loop driving many sessions.
- ``meters``: CPU counters of a process and of the machine, and what the machine is.
- ``measure``: one measured run of the client processes against one milter.
- ``peers``: the DNS server, the floor and mxguard that a run starts and stops.
- ``report``: the printed report and the JSON file.
- ``benchmark``: one whole run, from set-up to clean-up.
"""
