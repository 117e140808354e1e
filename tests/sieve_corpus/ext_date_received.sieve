require ["date", "index", "fileinto", "variables"];
if date :index 1 :matches "received" "date" "*" { fileinto "Hop.${1}"; }
if date :index 1 :last :zone "+0000" :is "received" "hour" "10" { fileinto "TenUTC"; }
