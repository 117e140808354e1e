require ["index", "fileinto"];
if header :index 1 :contains "received" "mx3.acme" { fileinto "FirstHop"; }
if header :index 1 :last :contains "received" "laptop" { fileinto "Origin"; }
