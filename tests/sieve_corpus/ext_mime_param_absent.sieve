require ["mime", "fileinto", "relational", "comparator-i;ascii-numeric"];
# A parameter a field lacks reads as the empty string (Pigeonhole); a
# message without the field has no value at all
if header :mime :param "charset" :is "content-type" "" { fileinto "NoCharset"; }
if header :mime :param "charset" :count "eq" :comparator "i;ascii-numeric"
        "content-type" "1" { fileinto "OneValue"; }
if header :mime :param "boundary" :matches "content-type" "*" { fileinto "Boundary"; }
