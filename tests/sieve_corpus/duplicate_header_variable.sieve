require ["duplicate", "variables", "fileinto"];
if header :matches "subject" "*" {
    if duplicate :uniqueid "${1}" :handle "subjects" { discard; stop; }
}
fileinto "Unique";
