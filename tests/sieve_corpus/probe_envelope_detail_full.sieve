require ["envelope", "fileinto"];
if envelope :is "to" "roadrunner+shopping@acme.example.com" { fileinto "Full"; }
if envelope :localpart :is "to" "roadrunner+shopping" { fileinto "Local"; }
