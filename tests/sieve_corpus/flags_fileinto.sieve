require ["imap4flags", "fileinto"];
fileinto "B";
