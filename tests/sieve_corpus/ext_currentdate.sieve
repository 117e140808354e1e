require ["date", "relational", "fileinto"];
if currentdate :value "ge" "year" "2024" { fileinto "Now"; }
if currentdate :value "lt" "year" "2000" { fileinto "Past"; }
