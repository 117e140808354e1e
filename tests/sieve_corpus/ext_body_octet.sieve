require ["body", "fileinto", "comparator-i;octet"];
if body :comparator "i;octet" :contains "ANVIL" { fileinto "Upper"; }
if body :contains "ANVIL" { fileinto "Casemap"; }
