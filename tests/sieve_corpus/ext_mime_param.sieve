require ["mime", "fileinto"];
if header :mime :anychild :param "filename" :matches "content-disposition" "*.pdf" {
    fileinto "PDF";
}
