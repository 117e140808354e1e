require "fileinto";
if address :all :is "to" "undisclosed-recipients" { fileinto "Group"; }
if exists "to" { fileinto "HasTo"; }
