require ["environment", "fileinto"];
if environment :contains "name" "Pigeonhole" { fileinto "Pigeonhole"; }
