require ["variables", "fileinto"];
if header :matches "subject" "*present*" { set "all" "${0}"; }
if string :is "${all}" "I have a present for you" { fileinto "WholeMatch"; }
