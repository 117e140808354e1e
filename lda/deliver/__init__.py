"""Delivering one message: the per-message command (`command`), the
orchestration (`delivery`), from recipients to targets (`resolve`), the
envelope check every entry point shares (`envelope`), the message as read
(`message`, `datefield`), Sieve during a delivery (`filtering`) and copies
handed to sendmail (`sendmail`).

Imported by every `lda deliver`: this file stays empty.
"""
