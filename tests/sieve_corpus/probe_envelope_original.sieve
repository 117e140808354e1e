require ["envelope", "fileinto"];
if envelope :is "to" "roadrunner@acme.example.com" { fileinto "Final"; }
if envelope :is "to" "rr@acme.example.com" { fileinto "Original"; }
