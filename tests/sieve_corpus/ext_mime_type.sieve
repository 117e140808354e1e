require ["mime", "fileinto"];
if header :mime :type "content-type" "multipart" { fileinto "Multipart"; }
if header :mime :subtype "content-type" "mixed" { fileinto "Mixed"; }
