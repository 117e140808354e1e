require ["imap4flags", "fileinto"];
addflag ["\\Deleted", "\\Draft", "\\Answered"];
fileinto "System";
