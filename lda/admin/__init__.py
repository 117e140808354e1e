"""The administration behind `lda mailbox|db|dedup|quota|partial|aliases|directory`:
mailboxes and databases in the directory (`mailboxes`, `databases`), the
directory in PostgreSQL, each host's mirror of it and the migration to it
(`pgdirectory`, `mirror`, `pgmigrate`), moves
(`move`), DeliveredTo look-ups and cleanup (`dedup`), quota (`quota`),
partial deliveries and their DSNs (`partial`, `dsn`), opening state for an
admin command (`state`) and `lda db check` (`check`).  Never imported by a
delivery; only `lda.cli` turns what these raise into exits."""
