require ["mailbox", "fileinto"];
if mailboxexists "Surely.Not.Here" { fileinto "Exists"; } else { fileinto "Missing"; }
