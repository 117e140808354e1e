"""lda: a Maildir local delivery agent that delivers each message exactly once."""

__version__ = "0.1.0"
