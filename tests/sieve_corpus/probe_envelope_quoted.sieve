require ["envelope", "fileinto", "subaddress"];
if envelope :is :localpart "from" "wile e" { fileinto "Local"; }
if envelope :is :all "from" "\"wile e\"@desert.example.org" { fileinto "All"; }
if envelope :is :user "from" "wile e" { fileinto "User"; }
