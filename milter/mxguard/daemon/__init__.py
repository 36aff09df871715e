"""The milter daemon: the pymilter adapter and what it hands work to (negotiation, message
edits, decision log), the server, sockets, state directory, runtime, logging, preloading and
the self-test."""
