require ["variables", "fileinto"];
if header :matches "subject" "I * a * for *" {
    fileinto "M.${01}.${2}.${3}";
}
