"""What lies on disk: Maildirs and their tmp -> new protocol (`maildir`),
Maildir++ quota (`maildirsize`), the DeliveredTo table (`deliveredto`), the
mailbox directory (`directory`), the aliases file and its compiled table
(`aliases`) and mailbox locks (`locks`).

Imported by every `lda deliver`: this file stays empty.
"""
