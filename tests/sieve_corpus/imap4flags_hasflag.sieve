require ["imap4flags", "fileinto"];
addflag "\\Answered";
if hasflag :contains "\\answered" { fileinto "Answered"; }
if hasflag :is "\\Seen" { fileinto "Seen"; }
