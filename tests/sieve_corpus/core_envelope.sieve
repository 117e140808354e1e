require ["envelope", "fileinto"];
if envelope :is "from" "coyote@desert.example.org" { fileinto "FromCoyote"; }
if envelope :domain :is "to" "acme.example.com" { fileinto "ToAcme"; }
