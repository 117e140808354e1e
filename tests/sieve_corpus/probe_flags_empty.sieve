require ["imap4flags", "fileinto"];
fileinto :flags "" "NoFlags";
