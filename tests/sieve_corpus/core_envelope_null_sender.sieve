require ["envelope", "fileinto"];
if envelope :is "from" "" { fileinto "Bounces"; }
