require ["variables", "fileinto"];
if address :matches "from" "*@*" {
    set "user" "${1}";
    set "domain" "${2}";
}
if string :is "${domain}" "desert.example.org" { fileinto "By.${user}"; }
