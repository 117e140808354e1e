require ["envelope", "subaddress", "fileinto"];
if envelope :user :is "to" "roadrunner" { fileinto "User"; }
if envelope :detail :is "to" "shopping" { fileinto "Shopping"; }
