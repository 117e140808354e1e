"""What lies on disk: Maildirs and their tmp -> new protocol (`maildir`),
Maildir++ quota (`maildirsize`), the DeliveredTo table (`deliveredto`), the
mailbox directory (`directory`), the aliases file and its compiled table
(`aliases`), mailbox locks (`locks`) and Dovecot's keyword letters
(`keywords`).

Imported by every `lda deliver`: this file stays empty.
"""
