require ["variables", "fileinto"];
set :length "n" "Café";
fileinto "Len${n}";
