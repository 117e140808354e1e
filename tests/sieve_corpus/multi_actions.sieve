require ["fileinto", "copy", "imap4flags"];
fileinto :copy "Archive";
redirect :copy "backup@example.org";
keep :flags "\\Flagged";
