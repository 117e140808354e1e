require ["date", "fileinto"];
if currentdate :zone "+1400" :matches "zone" "+1400" { fileinto "Kiribati"; }
