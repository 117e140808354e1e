"""`lda lmtp`: the protocol (`protocol`, aiosmtpd's LMTP with one reply per
recipient and RFC 3463 codes), what each command does (`handler`) and the
pre-fork server with its limits and graceful stop (`server`)."""
