require ["date", "fileinto", "variables"];
if date :zone "+0000" "date" "hour" "06" { fileinto "SixUTC"; }
if date :originalzone "date" "zone" "-0800" { fileinto "Pacific"; }
if date :matches "date" "date" "*" { fileinto "Day.${1}"; }
