require "fileinto";
if size :over 10K { fileinto "Big"; }
elsif size :under 1k { fileinto "Small"; }
else { fileinto "Medium"; }
