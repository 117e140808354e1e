require ["duplicate", "fileinto"];
if duplicate :header "x-no-such-header" { fileinto "Dup"; }
else { fileinto "NotDup"; }
