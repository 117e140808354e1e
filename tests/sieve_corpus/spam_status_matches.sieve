require ["fileinto", "variables"];
if header :matches "X-Spam-Status" "Yes, score=*.* *" {
    fileinto "Junk.Score${1}";
}
