"""The administration behind `lda mailbox|db|dedup|quota|partial|aliases`:
mailboxes and databases in the directory (`mailboxes`, `databases`), moves
(`move`), DeliveredTo look-ups and cleanup (`dedup`), quota (`quota`),
partial deliveries and their DSNs (`partial`, `dsn`), opening state for an
admin command (`state`) and `lda db check` (`check`).  Never imported by a
delivery; only `lda.cli` turns what these raise into exits."""
