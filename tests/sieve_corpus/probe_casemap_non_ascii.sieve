require "fileinto";
if header :is "subject" "CAFÉ CRÈME" { fileinto "FoldedNonAscii"; }
if header :is "subject" "CAFé CRèME" { fileinto "FoldedAscii"; }
