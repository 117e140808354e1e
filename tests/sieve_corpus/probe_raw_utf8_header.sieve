require "fileinto";
if header :contains "subject" "Grüße" { fileinto "Raw8bit"; }
