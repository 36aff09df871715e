"""The check framework: facts, findings, verdicts, options, configuration and the pipeline,
with the services a check is given (DNS, state store, notices) and the counters they keep
(metrics). It imports the checks only for their registry (config)."""
