"""Option negotiation: which milter steps and macros mxguard asks the MTA for.

Only the steps some check uses are taken and no reply is promised where no check can act, so
the MTA skips the round trips mxguard has no use for; recipients the MTA itself rejected are
shown too (``{rcpt_mailer}`` = ``error``).
"""

from __future__ import annotations

import Milter

from mxguard.core.facts import Stage
from mxguard.core.pipeline import Pipeline

# Macros requested per stage (at most 5 each); Postfix and Sendmail then send exactly these.
MACROS = {
    Milter.M_CONNECT: ("j", "{daemon_name}", "{daemon_addr}", "{if_addr}", "{client_addr}"),
    Milter.M_ENVFROM: ("i", "{auth_authen}", "{auth_type}"),
    Milter.M_ENVRCPT: ("i", "{rcpt_mailer}"),
    Milter.M_EOM: ("i",),
}

# The callbacks the adapter uses, with the stage whose checks decide there (None: never acts).
CALLBACK_STAGES: dict[str, Stage | None] = {
    "connect": Stage.CONNECT,
    "hello": Stage.HELO,
    "envfrom": Stage.MAIL,
    "envrcpt": Stage.RCPT,
    "header": None,
    "body": None,
}


NO_REPLY_BITS = {name: bits[0] for name, bits in Milter.OPTIONAL_CALLBACKS.items()}
STAGE_NO_REPLY_BITS = {
    stage: NO_REPLY_BITS[name] for name, stage in CALLBACK_STAGES.items() if stage
}


def protocol_bits(pipeline: Pipeline, offered: int) -> int:
    """The protocol bits to ask for, of those the MTA ``offered``, for this pipeline."""
    skip = 0
    for callback, (no_reply, no_call) in Milter.OPTIONAL_CALLBACKS.items():
        if callback not in CALLBACK_STAGES:
            skip |= no_call
            continue
        stage = CALLBACK_STAGES[callback]
        if stage is None or not pipeline.acts_on(stage):
            skip |= no_reply
        if callback == "body" and not pipeline.reads_body():
            skip |= no_call
    # Leading white space of header values as sent: DKIM's simple canonicalization needs
    # the exact bytes, and our own added values must then carry their space themselves.
    wanted = Milter.P_RCPT_REJ | Milter.P_HDR_LEADSPC | skip
    return offered & wanted
