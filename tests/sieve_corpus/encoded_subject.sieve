require "fileinto";
if header :contains "subject" "Café" { fileinto "Cafe"; }
if header :is "subject" "Café crème" { fileinto "Exact"; }
