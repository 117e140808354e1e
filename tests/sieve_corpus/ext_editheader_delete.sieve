require ["editheader", "fileinto"];
deleteheader "x-caffeine";
if not exists "x-caffeine" { fileinto "Deleted"; }
