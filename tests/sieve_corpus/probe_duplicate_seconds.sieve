require ["duplicate", "fileinto"];
if duplicate :seconds 60 :header "subject" { discard; }
fileinto "FirstSeen";
