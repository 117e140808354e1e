require ["index", "fileinto"];
if address :index 2 :is "received" "x" { fileinto "Odd"; }
if header :index 5 :contains "received" "" { fileinto "NoSuch"; }
