"""mxguard: a milter that refuses abusive mail during the SMTP conversation."""

__version__ = "0.1.0"
