"""The command-line tools: the CLI, doctor, docgen (sample INI, README reference, man page)
and what they read of Postfix."""
