# body with the relational match types (RFC 5173, RFC 5231): :value
# compares each selected part, :count counts the parts a transform selects
# (an empty body gives :raw nothing to count).
require ["body", "relational", "fileinto"];
if body :value "lt" "7" { fileinto "value-lt-7"; }
if body :value "gt" :comparator "i;octet" :raw "L" { fileinto "raw-value-gt-L"; }
if body :count "eq" :text "1" { fileinto "text-one"; }
if body :count "eq" :text "2" { fileinto "text-two"; }
if body :count "eq" :raw "0" { fileinto "raw-none"; }
if body :count "eq" :raw "1" { fileinto "raw-one"; }
if body :count "eq" :content "" "5" { fileinto "all-five"; }
if body :count "eq" :content "multipart" "2" { fileinto "multipart-two"; }
if body :count "eq" :content "image" "0" { fileinto "image-none"; }
