require ["date", "fileinto"];
if date :is "x-ratio" "year" "2026" { fileinto "Never"; }
