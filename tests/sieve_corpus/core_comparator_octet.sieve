require ["fileinto", "comparator-i;octet"];
if header :is :comparator "i;octet" "subject" "i have a present for you" { fileinto "Lower"; }
if header :is :comparator "i;octet" "subject" "I have a present for you" { fileinto "Exact"; }
if header :contains :comparator "i;ascii-casemap" "subject" "PRESENT" { fileinto "Casemap"; }
