require ["editheader", "fileinto"];
addheader "X-Filtered" "yes";
if header :is "x-filtered" "yes" { fileinto "SeesAdded"; }
