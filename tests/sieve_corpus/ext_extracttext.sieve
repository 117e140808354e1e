require ["mime", "foreverypart", "extracttext", "variables", "fileinto"];
foreverypart {
    if header :mime :type :is "content-type" "text" {
        extracttext :first 11 "start";
        if string :is "${start}" "Please find" { fileinto "Invoice"; }
        break;
    }
}
