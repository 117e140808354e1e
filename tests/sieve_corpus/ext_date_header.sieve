require ["date", "relational", "fileinto"];
if date :value "ge" "date" "year" "2026" { fileinto "Recent"; }
if date :is "date" "weekday" "2" { fileinto "Tuesday"; }
