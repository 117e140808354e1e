require ["body", "fileinto"];
if body :contains "anvil" { fileinto "Anvil"; }
