require ["relational", "fileinto"];
if header :value "lt" "subject" "M" { fileinto "AtoL"; }
else { fileinto "MtoZ"; }
