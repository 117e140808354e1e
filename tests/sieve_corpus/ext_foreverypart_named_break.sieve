require ["mime", "foreverypart", "fileinto"];
foreverypart :name "outer" {
    foreverypart {
        if header :mime :type :is "content-type" "application" { fileinto "Attach"; break :name "outer"; }
    }
}
