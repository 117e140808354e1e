require ["subaddress", "fileinto"];
if address :detail :is "cc" "lists" { fileinto "CcLists"; }
if address :user :is "cc" "wile" { fileinto "CcWile"; }
