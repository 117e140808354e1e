require ["spamtest", "fileinto"];
if spamtest "0" { fileinto "Untested"; }
elsif spamtest "10" { fileinto "Certain"; }
else { fileinto "Somewhere"; }
