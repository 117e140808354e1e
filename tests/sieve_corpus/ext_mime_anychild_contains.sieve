require ["mime", "fileinto"];
if header :mime :anychild :contains "content-type" "pdf" { fileinto "HasPdf"; }
if exists :mime :anychild "content-disposition" { fileinto "HasDisposition"; }
