require ["environment", "fileinto", "variables"];
if environment :is "location" "MDA" { fileinto "AtMDA"; }
if environment :is "phase" "during" { fileinto "During"; }
if environment :matches "domain" "*" { set "d" "${1}"; }
