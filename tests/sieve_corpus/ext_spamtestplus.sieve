require ["spamtestplus", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "50" { fileinto "Junk"; }
