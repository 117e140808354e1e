require "fileinto";
if header :contains "subject" "${hex:41}" { fileinto "Never"; }
fileinto "Literal";
