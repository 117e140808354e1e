require "fileinto";
if header :matches "subject" "CAF* CR*" { fileinto "Casemap"; }
