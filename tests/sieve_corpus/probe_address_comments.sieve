require "fileinto";
# RFC 5322 3.4.1 and A.5: comments and white space around the parts of an
# addr-spec are no part of it, inside angle brackets as well
if address :is :all "from" "coyote@desert.example.org" { fileinto "From"; }
if address :is :domain "to" "acme.example.com" { fileinto "ToDomain"; }
if address :is :all "cc" "pete@silly.example" { fileinto "Pete"; }
if address :is :localpart "cc" "wile" { fileinto "Wile"; }
